# Wheels for the static-gnu krunner environment. Built with manylinux2014's CPython so that
# anything compiled here needs no newer glibc than the images the environment runs in.
# Build context: this package directory. Build arg ARCH: x86_64 or aarch64.
ARG ARCH=x86_64
FROM quay.io/pypa/manylinux2014_${ARCH}

COPY requirements.txt /krunner-build/requirements.txt
RUN /opt/python/cp312-cp312/bin/python3 -m pip wheel \
      --no-cache-dir --wheel-dir /krunner-build/wheels -r /krunner-build/requirements.txt
