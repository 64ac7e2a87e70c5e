"""Build fastp2p. A pure-Python install always succeeds; kernels/ ships as fastp2p.kernels.

The extension fastp2p._C (csrc/) is built with pybind11 and a C++17 compiler, with no torch
headers or libraries, so it builds under pip's build isolation and survives torch upgrades.
Its CUDA part is built when nvcc is found (or FASTP2P_CUDA=1); FASTP2P_CUDA=0 skips it (another
value stops the build with one line, as does a FASTP2P_CUDA_ARCHS that is no list of compute
capabilities). Any failure leaves a pure-Python install; the reason is printed and recorded in
fastp2p/_C_build.json, which fastp2p.ops.backends.cpp reports at first use.
"""
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from setuptools import Extension, find_packages, setup
from setuptools.command.build_ext import build_ext

PACKAGES = find_packages(include=["fastp2p", "fastp2p.*"]) + ["fastp2p.kernels"]
ROOT = Path(__file__).resolve().parent
CPP_SOURCES = ["csrc/module.cpp", "csrc/norm_act.cpp", "csrc/losses.cpp", "csrc/conv.cpp",
               "csrc/cpu/norm_act_kernel.cpp", "csrc/cpu/loss_kernel.cpp",
               "csrc/cpu/col2im_kernel.cpp"]
CUDA_SOURCES = ["csrc/cuda/norm_act_kernel.cu"]
BUILD_INFO = "_C_build.json"


def _log(message):
    print(f"fastp2p build: {message}", flush=True)


def _version():
    """fastp2p/__init__.py's ``__version__``, the one place the version is written: read from
    the file's text, as importing the package needs torch, which the build does not have."""
    text = (ROOT / "fastp2p" / "__init__.py").read_text(encoding="utf-8")
    match = re.search(r'^__version__ = "([^"]+)"$', text, re.MULTILINE)
    if match is None:
        raise RuntimeError('fastp2p/__init__.py has no line __version__ = "X.Y.Z"')
    return match.group(1)


def _max_jobs():
    value = os.environ.get("MAX_JOBS", "")
    return max(1, int(value)) if value.isdigit() else max(1, os.cpu_count() or 1)


def _cuda_settings():
    """(FASTP2P_CUDA: "1", "0" or "" for unset, FASTP2P_CUDA_ARCHS or its default "90"). A value
    neither takes stops the build with one line naming it (SystemExit, which the build's own
    fallback to pure Python does not catch): FASTP2P_CUDA=false was taken as unset, and built the
    CUDA part where nvcc was found; FASTP2P_CUDA_ARCHS="" passed arch=compute_ to nvcc."""
    wanted = os.environ.get("FASTP2P_CUDA", "").strip()
    if wanted not in ("", "0", "1"):
        raise SystemExit(f"fastp2p build: error: FASTP2P_CUDA={wanted!r}: set it to 1 (build "
                         "the CUDA part), 0 (skip it), or leave it unset (built when nvcc is "
                         "found)")
    archs = os.environ.get("FASTP2P_CUDA_ARCHS", "90")
    if wanted != "0" and not all(re.fullmatch(r"\d+[a-z]?", arch) for arch in archs.split(";")):
        raise SystemExit(f"fastp2p build: error: FASTP2P_CUDA_ARCHS={archs!r}: set it to "
                         "compute capabilities separated by ';', e.g. 90 or 80;90a, or leave it "
                         "unset (90)")
    return wanted, archs


def _cuda_home(nvcc):
    """The toolkit root: nvcc's own report (it may be a wrapper script), else its parent folder."""
    try:
        report = subprocess.run([nvcc, "--dryrun", "-c", "x.cu"], capture_output=True, text=True,
                                timeout=60).stderr
        for line in report.splitlines():
            if line.startswith("#$ TOP="):
                return Path(os.path.realpath(line.split("=", 1)[1].strip()))
    except (OSError, subprocess.SubprocessError):
        pass
    return Path(os.path.realpath(nvcc)).parent.parent


class OptionalBuildExt(build_ext):
    """Builds fastp2p._C when it can; any failure installs without it and records why."""

    def run(self):
        self._info = {"built": False, "cuda": False, "openmp": False, "reason": ""}
        _cuda_settings()   # a typo in them is said before anything is built
        try:
            super().run()
        except Exception as error:  # a missing compiler surfaces here, before build_extension
            # After a skipped build, an editable install fails to copy the missing library:
            # keep the first reason (the one a user can act on), not that consequence.
            if not self._info["reason"]:
                self._skip(f"{type(error).__name__}: {error}")
        self._write_info()

    def build_extension(self, ext):
        started = time.time()
        try:
            self._build(ext)
        except Exception as error:
            self._skip(f"{type(error).__name__}: {error}")
            return
        self._info["built"] = True
        _log(f"built {ext.name} in {time.time() - started:.1f} s")

    def _skip(self, reason):
        self._info.update(built=False, reason=reason)
        _log(f"SKIPPED the C++ extension fastp2p._C ({reason}); installing pure Python")

    def _write_info(self):
        folder = Path(self.build_lib if not self.inplace else ROOT) / "fastp2p"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / BUILD_INFO).write_text(json.dumps(self._info, indent=1))

    # -- the build --------------------------------------------------------------------------
    def _build(self, ext):
        self._require_a_working_compiler()
        try:
            import pybind11
        except ImportError as error:
            raise RuntimeError("pybind11 is not installed (pip install pybind11)") from error
        try:
            cuda = self._cuda_config()
        except RuntimeError as error:  # FASTP2P_CUDA=1 without a usable toolkit
            self._info["cuda_reason"] = str(error)
            _log(f"CUDA part NOT built: {error}; building the CPU part alone")
            cuda = None
        if cuda:
            try:
                self._compile_and_link(ext, pybind11.get_include(), cuda)
                return
            except Exception as error:
                self._info["cuda_reason"] = f"{type(error).__name__}: {error}"
                _log(f"the CUDA part failed ({error}); building the CPU part alone")
        self._compile_and_link(ext, pybind11.get_include(), None)

    def _compile_and_link(self, ext, pybind11_include, cuda):
        compiler = self.compiler
        jobs = _max_jobs()
        openmp = self._has_flag(["-fopenmp"])
        # -fno-trapping-math: no code here reads FP exception flags, and it lets GCC turn the
        # activation gates into vector selects.
        cxx_flags = ["-std=c++17", "-O3", "-g0", "-fno-trapping-math", "-fvisibility=hidden"] + \
            (["-fopenmp"] if openmp else [])
        include_dirs = [pybind11_include, str(ROOT / "csrc")]
        macros = [("FASTP2P_WITH_CUDA", "1")] if cuda else []
        self._info.update(openmp=openmp, cuda=bool(cuda), cxx=compiler.compiler_so[0],
                          max_jobs=jobs, cuda_archs=cuda["archs"] if cuda else None)
        cuda_note = f"on: {cuda['nvcc']} sm_{cuda['archs']} + PTX" if cuda else "off"
        _log(f"compiler {compiler.compiler_so[0]}, C++17, OpenMP {'on' if openmp else 'off'}, "
             f"CUDA {cuda_note}, MAX_JOBS={jobs}")
        build_temp = Path(self.build_temp) / ("cuda" if cuda else "cpu")
        build_temp.mkdir(parents=True, exist_ok=True)

        def compile_cpp(source):
            return compiler.compile([source], output_dir=str(build_temp), macros=macros,
                                    include_dirs=include_dirs, extra_postargs=cxx_flags)[0]

        with ThreadPoolExecutor(jobs) as pool:
            cuda_objects = [pool.submit(self._nvcc, cuda, s, include_dirs, build_temp)
                            for s in (CUDA_SOURCES if cuda else [])]
            objects = list(pool.map(compile_cpp, CPP_SOURCES)) + [f.result() for f in cuda_objects]
        link_args = (["-fopenmp"] if openmp else []) + (cuda["link"] if cuda else [])
        compiler.link_shared_object(objects, self.get_ext_fullpath(ext.name),
                                    extra_postargs=link_args, target_lang="c++")

    def _require_a_working_compiler(self):
        """A trivial program compiled and linked first: a compiler that cannot do that is the
        reason at once, not after nvcc's minute and two failed builds of the whole extension."""
        if not self._compiles("int main() { return 0; }\n", []):
            raise RuntimeError(f"no working C++ compiler ({self.compiler.compiler_so[0]})")

    def _has_flag(self, flags):
        return self._compiles(
            "#include <omp.h>\nint main() { return omp_get_max_threads() > 0 ? 0 : 1; }\n", flags)

    def _compiles(self, program, flags):
        """Whether the C++ ``program`` compiles and links with ``flags``."""
        with tempfile.TemporaryDirectory() as folder:
            source = Path(folder) / "probe.cpp"
            source.write_text(program)
            try:
                objects = self.compiler.compile([str(source)], output_dir=folder,
                                                extra_postargs=flags)
                self.compiler.link_executable(objects, str(Path(folder) / "probe"),
                                              extra_postargs=flags, target_lang="c++")
                return True
            except Exception:
                return False

    def _cuda_config(self):
        """nvcc settings, or None. nvcc is looked for only here, and only unless FASTP2P_CUDA=0."""
        wanted, archs = _cuda_settings()
        if wanted == "0":
            _log("CUDA part skipped: FASTP2P_CUDA=0")
            return None
        nvcc = shutil.which("nvcc")
        cuda_home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
        if nvcc is None and cuda_home and (Path(cuda_home) / "bin" / "nvcc").exists():
            nvcc = str(Path(cuda_home) / "bin" / "nvcc")
        if nvcc is None:
            if wanted == "1":
                raise RuntimeError("FASTP2P_CUDA=1 but nvcc was not found (set CUDA_HOME or PATH)")
            _log("CUDA part skipped: nvcc not found")
            return None
        home = _cuda_home(nvcc)
        lib_dirs = [d for d in (home / "lib64", home / "lib",
                                home / "targets" / "x86_64-linux" / "lib",
                                home / "targets" / "sbsa-linux" / "lib")
                    if (d / "libcudart_static.a").exists()]
        if not lib_dirs:
            if wanted == "1":
                raise RuntimeError(f"FASTP2P_CUDA=1 but libcudart_static.a is not under {home}")
            _log(f"CUDA part skipped: no libcudart_static.a under {home}")
            return None
        # Hopper (sm_90) machine code plus compute_90 PTX that newer GPUs JIT-compile.
        gencode = []
        for arch in archs.split(";"):
            gencode += ["-gencode", f"arch=compute_{arch},code=sm_{arch}"]
        ptx_arch = archs.split(";")[-1]
        gencode += ["-gencode", f"arch=compute_{ptx_arch},code=compute_{ptx_arch}"]
        # Static cudart: no libcudart.so to find at import; streams are driver handles, so torch's
        # current stream is valid here too.
        link = [f"-L{lib_dirs[0]}", "-lcudart_static", "-ldl", "-lrt", "-lpthread"]
        return {"nvcc": nvcc, "archs": archs, "gencode": gencode, "link": link}

    def _nvcc(self, cuda, source, include_dirs, build_temp):
        output = build_temp / (Path(source).stem + ".cu.o")
        command = [cuda["nvcc"], "-c", source, "-o", str(output), "-std=c++17", "-O3",
                   "--use_fast_math", "-Xcompiler", "-fPIC,-fvisibility=hidden",
                   "-DFASTP2P_WITH_CUDA=1"] + cuda["gencode"] + [f"-I{d}" for d in include_dirs]
        _log(" ".join(command))
        started = time.time()
        subprocess.run(command, check=True, cwd=ROOT)
        _log(f"nvcc {source}: {time.time() - started:.1f} s")
        return str(output)


setup(
    name="fastp2p",
    version=_version(),
    description="Fast pix2pix: fused kernels and a CUDA-graph training step, drop-in for the "
                "reference PyTorch implementation",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    # 3.10.5: its ProcessPoolExecutor forks every worker of a fork pool at the first task
    # (CPython gh-90622), which fastp2p.data.worker_pool relies on; 3.10.0-3.10.4 fork them
    # one at a time, and every worker but the first died at its first result there
    python_requires=">=3.10.5",
    packages=PACKAGES,
    package_dir={"fastp2p.kernels": "kernels"},
    # the measured choice tables (norm-act backend, fused conv), once a GPU run commits them
    package_data={"fastp2p.ops.backends": ["cuda_norm_act_choice.json", "conv_choice.json"]},
    ext_modules=[Extension("fastp2p._C", sources=CPP_SOURCES, language="c++")],
    cmdclass={"build_ext": OptionalBuildExt},
    # A range that an installed CPU build satisfies: pip then installs no CUDA torch on top of it.
    install_requires=["torch>=2.8", "numpy"],
    extras_require={
        # 3.4: torch 2.8's pin, the oldest torch fastp2p runs with; no older Triton was run
        "triton": ["triton>=3.4"],
        # fastp2p test and pack (Pillow, tqdm), and the embedded default dataset (scikit-image)
        "data": ["pillow>=10", "tqdm>=4.60", "scikit-image>=0.22"],
        # fastp2p train: the data extra, and matplotlib for the loss plot of its web page
        "train": ["pillow>=10", "tqdm>=4.60", "matplotlib>=3.7", "scikit-image>=0.22"],
        # fastp2p bench: the chart; Pillow and tqdm for the end-to-end section (`fastp2p
        # train` on a synthetic set) and the data micro-benchmark; pytest-benchmark only for
        # `pytest benchmarks/`.
        "bench": ["matplotlib>=3.7", "pillow>=10", "tqdm>=4.60", "pytest-benchmark>=4"],
        # fastp2p train/test --tensorboard and --use_wandb
        "trackers": ["tensorboard>=2.10", "wandb>=0.16"],
        # Everything the test suite exercises; triton and numpy pinned (the interpreter's
        # behaviour is what CI proves the kernels with).
        "test": ["pytest>=8", "pytest-benchmark>=4", "pytest-timeout>=2.1", "triton==3.9.0",
                 "numpy>=2,<3", "pillow>=10", "tqdm>=4.60", "matplotlib>=3.7",
                 "scikit-image>=0.22"],
    },
    entry_points={"console_scripts": ["fastp2p=fastp2p.cli:main"]},
)
