"""`sammed3d web` refuses bad input with one line and exit status 2 (no traceback), before loading a model or
serving anything."""
import socket

from sammed3d.cli import main


def test_bad_input_is_one_line_and_status_2(tmp_path, ct_3mm_path, capsys):
    output = tmp_path / "out.seg.nrrd"
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        free = socket.socket()
        free.bind(("127.0.0.1", 0))
        free_port = free.getsockname()[1]
        free.close()
        cases = [
            ([tmp_path / "missing.nii.gz", "-o", output, "--port", free_port], "image not found"),
            ([ct_3mm_path, "-o", tmp_path / "out.nii.gz", "--port", free_port], ".seg.nrrd"),
            ([ct_3mm_path, "-o", tmp_path / "no" / "out.seg.nrrd", "--port", free_port], "does not exist"),
            ([ct_3mm_path, "-o", output, "--port", busy.getsockname()[1]], "cannot listen"),
            ([ct_3mm_path, "-o", output, "--host", "0.0.0.0"], "--token"),
            ([ct_3mm_path, "-o", output, "--port", free_port, "--segmentation", tmp_path / "none.seg.nrrd"],
             "segmentation file not found"),
            ([ct_3mm_path, "-o", output, "--port", free_port, "--max-scenes", "0"], "--max-scenes"),
            ([ct_3mm_path, "-o", output, "--port", free_port, "--scene-idle-timeout", "0"], "--scene-idle-timeout"),
        ]
        for args, message in cases:
            assert main(["web"] + [str(a) for a in args]) == 2, args
            error = capsys.readouterr().err
            assert message in error and "Traceback" not in error, error
            assert len(error.strip().splitlines()) == 1, error
    assert not list(tmp_path.iterdir())
