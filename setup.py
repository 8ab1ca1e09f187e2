"""The optional C extension (the block loops of lru-v6.8 and usage-v2); everything else is
in pyproject.toml. Without a working C compiler (or Python headers) the install still
succeeds, with a warning, and the pure-Python policies run (msgpack's pattern)."""

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.errors import CCompilerError, CompileError, ExecError, PlatformError

_BUILD_ERRORS = (CCompilerError, CompileError, ExecError, PlatformError, OSError)


class OptionalBuildExt(build_ext):
    def run(self):
        try:
            super().run()
        except _BUILD_ERRORS as e:
            self._skip(e)

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except _BUILD_ERRORS as e:
            self._skip(e)

    def _skip(self, e):
        self.warn(f"gictools: C extension not built ({e}); the pure-Python block loops will run")


setup(
    ext_modules=[
        Extension("gictools.model.cache._blocks", ["gictools/model/cache/_blocks.c"], optional=True)
    ],
    cmdclass={"build_ext": OptionalBuildExt},
)
