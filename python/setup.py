"""Builds the `pangea` package from this checkout (see pyproject.toml): CMake configures the whole
project without LibTorch and without tests, builds the extension pangea._pangea and the built-in
plugins, and both go into the package (the plugins into pangea/plugins/, where the extension
looks for them)."""
import os
import pathlib
import shutil
import subprocess
import sys

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.dist import Distribution

ROOT = pathlib.Path(__file__).resolve().parent.parent


class BinaryDistribution(Distribution):
    def has_ext_modules(self):
        return True  # a platform wheel: the package holds an extension and plugins


class BuildWithCMake(build_py):
    def run(self):
        super().run()
        build = pathlib.Path(self.get_finalized_command("build").build_temp).resolve() / "cmake"
        configure = ["cmake", "-S", str(ROOT), "-B", str(build), "-DCMAKE_BUILD_TYPE=RelWithDebInfo",
                     "-DPANGEA_WITH_MODEL=OFF", "-DPANGEA_BUILD_TESTS=OFF", f"-DPython3_EXECUTABLE={sys.executable}"]
        if shutil.which("ninja"):
            configure += ["-G", "Ninja"]
        subprocess.run(configure, check=True)
        subprocess.run(["cmake", "--build", str(build), "--target", "python_package", "--parallel",
                        str(os.cpu_count() or 1)], check=True)
        package = pathlib.Path(self.build_lib) / "pangea"
        for extension in (build / "python" / "pangea").glob("_pangea*.so"):
            shutil.copy2(extension, package / extension.name)
        plugins = package / "plugins"
        plugins.mkdir(exist_ok=True)
        for plugin in (build / "lib" / "pangea" / "plugins").glob("*.so"):
            shutil.copy2(plugin, plugins / plugin.name)


setup(cmdclass={"build_py": BuildWithCMake}, distclass=BinaryDistribution)
