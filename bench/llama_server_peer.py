"""llama.cpp's C++ `llama-server`, built once from the llama.cpp sources our runtime was built from (the
`vendor/llama.cpp` tree of the installed llama-cpp-python's sdist), as a peer for bench/api_throughput.py.

    from bench.llama_server_peer import find_or_build, llama_server_argv
    binary = find_or_build(Path("~/.cache/domain-llm/peers").expanduser())

The cache (default ~/.cache/domain-llm/peers, env DOMAIN_LLM_PEER_CACHE) holds the sdist, its extracted tree and
the CPU build (GGML_NATIVE=OFF like `make setup`'s llama-cpp-python, no curl, no tests or examples) in
`<sdist>/vendor/llama.cpp/build/bin`. `native=True` builds for this CPU instead (GGML_NATIVE=ON: AVX-512 and the
like where the CPU has them) into `build-native/bin`, with shared libraries that llama-cpp-python loads through
LLAMA_CPP_LIB_PATH, so every server of a bench can run the same native llama.cpp.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import tarfile
from pathlib import Path

DEFAULT_CACHE = Path(os.environ.get("DOMAIN_LLM_PEER_CACHE") or Path.home() / ".cache" / "domain-llm" / "peers")


INSTALLED_BUILD = "the installed llama-cpp-python's build"  # the llama.cpp the venv's llama_cpp package carries


def use_native_build(cache: Path) -> Path:
    """llama.cpp built for this CPU (once) for every server of a bench: returns its llama-server and points
    llama-cpp-python in this process's subprocesses at the build's libraries (LLAMA_CPP_LIB_PATH)."""
    binary = find_or_build(cache, native=True)
    os.environ["LLAMA_CPP_LIB_PATH"] = str(binary.parent)
    return binary


def runtime_build() -> str:
    """Which llama.cpp llama-cpp-python loads in this process's subprocesses (for a result file)."""
    lib = os.environ.get("LLAMA_CPP_LIB_PATH")
    return f"the build in {lib} (LLAMA_CPP_LIB_PATH)" if lib else INSTALLED_BUILD


def installed_build_has_avx512() -> bool:
    """True after `make native` on an AVX-512 CPU: kernels the portable llama-server build lacks."""
    import llama_cpp

    return "AVX512 = 1" in llama_cpp.llama_print_system_info().decode()


def source_dir(cache: Path, version: str) -> Path:
    return cache / f"llama_cpp_python-{version}" / "vendor" / "llama.cpp"


def build_dir(cache: Path, version: str, native: bool = False) -> Path:
    return source_dir(cache, version) / ("build-native" if native else "build")


def find_or_build(cache: Path, native: bool = False) -> Path:
    """The cached `llama-server` for the installed llama-cpp-python version; downloads its sdist and builds
    the binary first when it is missing (minutes; a lock file keeps two runs from building at once).
    Its folder also holds the build's shared libraries (LLAMA_CPP_LIB_PATH for llama-cpp-python)."""
    import llama_cpp

    version = llama_cpp.__version__
    binary = build_dir(cache, version, native) / "bin" / "llama-server"
    kind = "native" if native else "portable"
    if binary.is_file():
        print(f"llama-server: using {binary} ({kind} build of llama-cpp-python {version}'s llama.cpp)", flush=True)
        return binary
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / "llama-server.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not binary.is_file():
            build(cache, version, native)
    if not binary.is_file():
        sys.exit(f"error: the build finished but {binary} is missing")
    return binary


def fetch_sources(cache: Path, version: str | None = None) -> Path:
    """The llama.cpp tree of the installed llama-cpp-python's sdist (downloaded and extracted once)."""
    if version is None:
        import llama_cpp

        version = llama_cpp.__version__
    src = source_dir(cache, version)
    if not (src / "CMakeLists.txt").is_file():
        print(f"llama.cpp sources: downloading the llama-cpp-python {version} sdist into {cache}", flush=True)
        cache.mkdir(parents=True, exist_ok=True)
        run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
             f"llama-cpp-python=={version}", "-d", str(cache)])
        sdists = sorted(cache.glob(f"llama[-_]cpp[-_]python-{version}.tar.gz"))
        if not sdists:
            sys.exit(f"error: pip download left no llama-cpp-python {version} sdist in {cache}")
        with tarfile.open(sdists[0]) as tar:
            tar.extractall(cache, filter="data")
    return src


def build(cache: Path, version: str, native: bool = False) -> None:
    src = fetch_sources(cache, version)
    jobs = str(os.cpu_count() or 1)
    folder = build_dir(cache, version, native).name
    print(f"llama-server: building it in {src}/{folder} with {jobs} jobs (minutes, once)", flush=True)
    flags = ["-DGGML_NATIVE=ON", "-DBUILD_SHARED_LIBS=ON"] if native else ["-DGGML_NATIVE=OFF"]
    run(["cmake", "-B", folder, *flags, "-DLLAMA_CURL=OFF", "-DLLAMA_BUILD_TESTS=OFF",
         "-DLLAMA_BUILD_EXAMPLES=OFF", "-DCMAKE_BUILD_TYPE=Release"], cwd=src)
    run(["cmake", "--build", folder, "--target", "llama-server", f"-j{jobs}"], cwd=src)


def run(argv: list[str], cwd: Path | None = None) -> None:
    if subprocess.run(argv, cwd=cwd).returncode != 0:
        sys.exit(f"error: {' '.join(argv)} failed")


def llama_server_argv(binary: Path, gguf: Path, port: int, threads: int, n_ctx: int, parallel: int,
                      flash_attn: str) -> list[str]:
    """`parallel` slots of `n_ctx` tokens each (-c is the total). Continuous batching and the prompt cache stay
    on (its defaults); flash attention as the bench says for every server (on/off), so all run the same
    attention kernels; no web UI."""
    return [str(binary), "-m", str(gguf), "--host", "127.0.0.1", "--port", str(port), "-t", str(threads),
            "-tb", str(threads), "-np", str(parallel), "-c", str(n_ctx * parallel), "-fa", flash_attn, "--no-webui"]
