"""pip install for the xent package, offline with Debian's setuptools:

    pip install --no-build-isolation ./python          (from the repository root)

The extension is built by the project's own CMake (the same build as
`cmake -DXENT_BUILD_PYTHON=ON`, tests/benchmarks/CLI off), so there is one
build description; setuptools only copies the result into the wheel.
"""

import os
import pathlib
import re
import shutil
import subprocess
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent  # the CMake project


def project_version():
    text = (ROOT / "CMakeLists.txt").read_text()
    return re.search(r"project\(xent VERSION ([0-9.]+)", text).group(1)


class CMakeExtension(Extension):
    def __init__(self, name):
        super().__init__(name, sources=[])


class CMakeBuild(build_ext):
    def build_extension(self, ext):
        build_dir = pathlib.Path(self.build_temp).resolve() / "cmake"
        subprocess.check_call([
            "cmake", "-S", str(ROOT), "-B", str(build_dir), "-DCMAKE_BUILD_TYPE=Release",
            "-DXENT_BUILD_PYTHON=ON", "-DXENT_BUILD_TESTS=OFF", "-DXENT_BUILD_BENCH=OFF",
            "-DXENT_BUILD_CLI=OFF", f"-DPython3_EXECUTABLE={sys.executable}"])
        subprocess.check_call(["cmake", "--build", str(build_dir), "--target", "_xent",
                               "-j", str(os.cpu_count() or 1)])
        built = next((build_dir / "python" / "xent").glob("_xent*.so"))
        dest = pathlib.Path(self.get_ext_fullpath(ext.name))
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(built, dest)


setup(
    name="xent",
    version=project_version(),
    description="Cross-entropy, exact and at the speed of memory",
    packages=["xent", "xent.torch"],
    ext_modules=[CMakeExtension("xent._xent")],
    cmdclass={"build_ext": CMakeBuild},
    python_requires=">=3.9",
    install_requires=["numpy"],
    extras_require={"torch": ["torch"]},
    zip_safe=False,
)
