"""What the GPU install relies on, tested without a GPU: NVIDIA's wheel libraries are found and
loaded before mxnet, and a missing MXNet is a one-line error naming both installs."""
import os
import subprocess
import sys

import pytest

from train_cli import cuda_libs

from helpers import REPO


def compile_library(path, source, *link):
    path.parent.mkdir(parents=True, exist_ok=True)
    c = path.with_suffix(".c")
    c.write_text(source)
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(path), str(c),
                    f"-Wl,-soname,{path.name}", *link], check=True)


@pytest.fixture
def fake_nvidia(tmp_path):
    """site-packages/nvidia as the cu117 wheels lay it out: cuDNN needs cuBLASLt, in another
    package's lib/ folder, which the loader does not search; cuBLAS's wheel also ships
    libnvblas, which exports the BLAS symbols of the CPU's own BLAS."""
    root = tmp_path / "nvidia"
    base = root / "cublas" / "lib" / "libcublasLt.so.11"
    compile_library(base, "int swt_base(void) { return 41; }\n")
    top = root / "cudnn" / "lib" / "libcudnn.so.8"
    compile_library(top, "int swt_base(void);\nint swt_top(void) { return swt_base() + 1; }\n",
                    f"-L{base.parent}", f"-l:{base.name}")
    compile_library(root / "cublas" / "lib" / "libnvblas.so.11", "void sgemm_(void) {}\n")
    return root


def in_fresh_process(code):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)


def test_preload_loads_what_mxnet_needs_so_a_soname_lookup_finds_it(fake_nvidia):
    # in a fresh process: what mxnet's libmxnet.so does is a lookup by soname
    done = in_fresh_process(
        f"from train_cli import cuda_libs; import ctypes; "
        f"loaded = cuda_libs.preload({str(fake_nvidia)!r}); "
        "print(' '.join(p.name for p in loaded)); print(ctypes.CDLL('libcudnn.so.8').swt_top()); "
        "print('libnvblas' in open('/proc/self/maps').read())")
    assert done.returncode == 0, done.stderr
    # both loaded (cuDNN after its dependency); libnvblas, which MXNet never uses, is not
    assert done.stdout.split() == ["libcublasLt.so.11", "libcudnn.so.8", "42", "False"]
    without = in_fresh_process("import ctypes; ctypes.CDLL('libcudnn.so.8')")
    assert without.returncode != 0  # the loader alone would not have found it


def test_a_needed_library_that_cannot_load_is_an_error_naming_what_it_lacks(fake_nvidia,
                                                                             tmp_path):
    """cuDNN's convolution part needs the system's libz.so.1: without it the first convolution
    failed, after the preflight had passed."""
    missing = tmp_path / "sys" / "libz.so.77"  # a zlib no machine has
    compile_library(missing, "int swt_z(void) { return 1; }\n")
    compile_library(fake_nvidia / "cudnn" / "lib" / "libcudnn_cnn_infer.so.8",
                    "int swt_z(void);\nint swt_cnn(void) { return swt_z(); }\n",
                    f"-L{missing.parent}", f"-l:{missing.name}")
    missing.unlink()  # as on a machine without zlib
    with pytest.raises(cuda_libs.LoadError) as e:
        cuda_libs.preload(fake_nvidia)
    assert str(e.value).startswith("NVIDIA's libcudnn_cnn_infer.so.8 cannot be loaded "
                                   "(libz.so.77: cannot open shared object file")
    assert "apt-get install zlib1g" in str(e.value) and "\n" not in str(e.value)


def test_preload_without_nvidia_wheels_does_nothing(tmp_path):
    assert cuda_libs.preload(tmp_path / "missing") == []
    (tmp_path / "empty").mkdir()
    assert cuda_libs.preload(tmp_path / "empty") == []


def test_one_mxnet_1_9_1_is_installed_and_the_cuda_build_is_recognised():
    """`make install` (mxnet) or `make install CUDA=11.7` (mxnet-cu117): the same package."""
    from importlib.metadata import PackageNotFoundError, version
    found = {}
    for name in ("mxnet", "mxnet-cu117"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            pass
    assert list(found.values()) == ["1.9.1"], found
    assert cuda_libs.cuda_build_installed() == ("mxnet-cu117" in found)


def test_missing_mxnet_is_a_one_line_error_naming_both_installs():
    code = ("import sys; sys.modules['mxnet'] = None; sys.argv = ['swishtrain', 'models']; "
            "from train_cli.cli import main; main()")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 1
    err = done.stderr.strip()
    assert err.startswith("Error: MXNet is not installed") and "\n" not in err
    assert "make install CUDA=11.7" in err and "swishtrain[cpu]" in err


@pytest.fixture(scope="module")
def cuda_build_site(tmp_path_factory):
    """A site folder that makes this venv look like `make install CUDA=11.7` to the entry
    points: mxnet-cu117's metadata, and an nvidia wheel library that says when it is loaded;
    sitecustomize says when mxnet is first imported."""
    site = tmp_path_factory.mktemp("site")
    meta = site / "mxnet_cu117-1.9.1.dist-info"
    meta.mkdir()
    (meta / "METADATA").write_text("Metadata-Version: 2.1\nName: mxnet-cu117\nVersion: 1.9.1\n")
    compile_library(site / "nvidia" / "cuda_runtime" / "lib" / "libcudart.so.11.0",
                    '#include <unistd.h>\n__attribute__((constructor)) static void hello(void) '
                    '{ write(2, "[nvidia loaded]\\n", 16); }\n')
    (site / "sitecustomize.py").write_text(
        "import sys\n"
        "class Watch:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'mxnet':\n"
        "            sys.stderr.write('[mxnet imported]\\n'); sys.stderr.flush()\n"
        "            sys.meta_path.remove(self)\n"
        "sys.meta_path.insert(0, Watch())\n")
    return site


ENTRY_POINTS = {
    "swishtrain": ["-m", "train_cli", "models"],
    "launch's scheduler and servers": ["-m", "train_cli.startup"],
    "make install's Swish build": ["-m", "train_cli.startup", "build-swish"],
    "make gpu-check": ["-m", "train_cli.gpu_check"],
    "the test suite": ["-m", "pytest", "--collect-only", "-q", "-s", "-p", "no:cacheprovider",
                       "tests/test_mxnet_private.py"],
    "benchmarks/mx_train_step.py": ["benchmarks/mx_train_step.py", "--help"],
    "benchmarks/conv_as_gemm.py": ["benchmarks/conv_as_gemm.py", "--help"],
}


@pytest.mark.skipif(cuda_libs.cuda_build_installed(),
                    reason="the CUDA build's own nvidia package shadows the fake one; "
                           "`make cuda-smoke` runs these entry points on the real libraries")
@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_every_entry_point_loads_nvidias_libraries_before_mxnet(entry, cuda_build_site):
    """On a CUDA build, importing mxnet first fails: libmxnet.so needs the wheels' libraries."""
    env = dict(os.environ, PYTHONPATH=f"{cuda_build_site}{os.pathsep}{REPO}")
    done = subprocess.run([sys.executable, *ENTRY_POINTS[entry]], capture_output=True,
                          text=True, env=env, cwd=REPO, timeout=300)
    events = [line for line in done.stderr.splitlines() if line in ("[nvidia loaded]",
                                                                     "[mxnet imported]")]
    assert events[:2] == ["[nvidia loaded]", "[mxnet imported]"], done.stderr[-2000:]
