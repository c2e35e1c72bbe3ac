"""What the GPU install relies on, tested without a GPU: NVIDIA's wheel libraries are found and
loaded before mxnet, and a missing MXNet is a one-line error naming both installs."""
import subprocess
import sys

import pytest

from train_cli import cuda_libs


def compile_library(path, source, *link):
    path.parent.mkdir(parents=True, exist_ok=True)
    c = path.with_suffix(".c")
    c.write_text(source)
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(path), str(c),
                    f"-Wl,-soname,{path.name}", *link], check=True)


@pytest.fixture
def fake_nvidia(tmp_path):
    """site-packages/nvidia as the cu117 wheels lay it out: libtop needs libbase, in another
    package's lib/ folder, which the loader does not search."""
    root = tmp_path / "nvidia"
    base = root / "cublas" / "lib" / "libswtbase.so.11"
    compile_library(base, "int swt_base(void) { return 41; }\n")
    top = root / "cudnn" / "lib" / "libswttop.so.8"
    compile_library(top, "int swt_base(void);\nint swt_top(void) { return swt_base() + 1; }\n",
                    f"-L{base.parent}", f"-l:{base.name}")
    return root


def test_preload_loads_every_wheel_library_so_a_soname_lookup_finds_it(fake_nvidia):
    # in a fresh process: what mxnet's libmxnet.so does is a lookup by soname
    code = (f"from train_cli import cuda_libs; import ctypes; "
            f"loaded = cuda_libs.preload({str(fake_nvidia)!r}); "
            "print(len(loaded)); print(ctypes.CDLL('libswttop.so.8').swt_top())")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["2", "42"]  # both loaded (libtop after its dependency)
    without = subprocess.run([sys.executable, "-c", "import ctypes; ctypes.CDLL('libswttop.so.8')"],
                             capture_output=True, text=True)
    assert without.returncode != 0  # the loader alone would not have found it


def test_preload_without_nvidia_wheels_does_nothing(tmp_path):
    assert cuda_libs.preload(tmp_path / "missing") == []
    (tmp_path / "empty").mkdir()
    assert cuda_libs.preload(tmp_path / "empty") == []


def test_the_cpu_build_loads_no_nvidia_library():
    """This venv has the `cpu` extra: the entry point must not go looking for CUDA."""
    from importlib.metadata import version
    assert version("mxnet") == "1.9.1"
    assert not cuda_libs.cuda_build_installed()


def test_missing_mxnet_is_a_one_line_error_naming_both_installs():
    code = ("import sys; sys.modules['mxnet'] = None; sys.argv = ['swishtrain', 'models']; "
            "from train_cli.cli import main; main()")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 1
    err = done.stderr.strip()
    assert err.startswith("Error: MXNet is not installed") and "\n" not in err
    assert "make install CUDA=11.7" in err and "swishtrain[cpu]" in err
