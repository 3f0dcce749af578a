"""`benchmark.py medsam`: MedSAM (SAM ViT-B 2D) encoder speed vs segment-anything==1.0, same weights, one process.

Prints the encoder speed-up, parity, the box decoder time, the error of bf16 (CPU, CUDA) / fp16 (CUDA) autocast and,
on a GPU, slices per second when several slices are encoded per forward.
"""
import statistics
import time

import torch


def bench_medsam(args, timed):
    from medsam_oracle import official_box_decode, paired_models, relative_error
    from sammed3d.devices import autocast
    from sammed3d.medsam.model import Sam2DConfig

    config = Sam2DConfig.named(args.config)
    official, ours = paired_models(config, seed=0)
    size = config.image_size
    x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(1))
    boxes = torch.tensor([[0.2, 0.3, 0.6, 0.7]]) * size
    print("torch %s, %d threads, config %s (%dx%d input)" % (torch.__version__, torch.get_num_threads(), args.config,
                                                            size, size))
    with torch.inference_mode():
        # cold calls (peak memory), then alternating timed calls: on a shared machine the load drifts, and timing
        # one implementation after the other would hand the difference to whichever ran in the quieter minute
        from benchmark import PeakMemory

        with PeakMemory() as memory:
            ours.image_encoder(x)
        mem_ours = memory.mib
        with PeakMemory() as memory:
            official.image_encoder(x)
        mem_official = memory.mib
        ours_times, official_times = [], []
        for _ in range(max(1, args.repeats)):
            for model, times in ((ours, ours_times), (official, official_times)):
                start = time.perf_counter()
                model.image_encoder(x)
                times.append(time.perf_counter() - start)
        enc_ours, enc_official = statistics.median(ours_times), statistics.median(official_times)
        ratios = [o / u for o, u in zip(official_times, ours_times)]
        emb_ours, emb_official = ours.image_encoder(x), official.image_encoder(x)
        dec_ours, _ = timed(lambda: ours.decode_boxes(emb_ours, boxes), 10)
        dec_official, _ = timed(lambda: official_box_decode(official, emb_ours, boxes), 10)
        decoded = relative_error(ours.decode_boxes(emb_ours, boxes), official_box_decode(official, emb_ours, boxes)[0])
    print("parity: encoder rel. error %.2e, box decoder rel. error %.2e"
          % (relative_error(emb_ours, emb_official), decoded))
    print("encoder (median of %d alternating runs): segment-anything %.2f s, sammed3d %.2f s -> speed-up %.2fx "
          "(per-pair speed-ups %s)" % (len(ours_times), enc_official, enc_ours, enc_official / enc_ours,
                                       ", ".join("%.2fx" % r for r in ratios)))
    print("encoder peak memory above baseline: segment-anything %.0f MiB, sammed3d %.0f MiB"
          % (mem_official, mem_ours))
    print("box prompt + decoder: segment-anything %.1f ms, sammed3d %.1f ms" % (dec_official * 1e3, dec_ours * 1e3))

    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    for device in devices:
        model = ours.to(device)
        with torch.inference_mode():
            ref = model.encode(x.to(device))
            ref_logits = model.decode_boxes(ref, boxes.to(device))
            for precision in ("bf16", "fp16"):
                if device.type == "cpu" and (precision == "fp16" or not args.cpu_precision):
                    continue
                with autocast(device, precision):
                    low = model.encode(x.to(device))
                    low_logits = model.decode_boxes(low, boxes.to(device))
                agree = ((low_logits > 0) == (ref_logits > 0)).float().mean().item()
                print("%s %s: embedding rel. error %.2e, logits rel. error %.2e, low-res mask agreement %.4f"
                      % (device.type, precision, relative_error(low.float(), ref),
                         relative_error(low_logits.float(), ref_logits), agree))
        if device.type == "cuda":
            for batch in (1, 4, 8):
                images = torch.rand(batch, 3, size, size, device=device)
                for precision in ("fp32", "bf16"):
                    with torch.inference_mode(), autocast(device, precision):
                        model.encode(images)
                        torch.cuda.synchronize()
                        start = time.perf_counter()
                        for _ in range(3):
                            model.encode(images)
                        torch.cuda.synchronize()
                    per_slice = (time.perf_counter() - start) / (3 * batch)
                    print("cuda encoder, %d slice(s) per forward, %s: %.1f ms per slice" % (batch, precision,
                                                                                          per_slice * 1e3))
