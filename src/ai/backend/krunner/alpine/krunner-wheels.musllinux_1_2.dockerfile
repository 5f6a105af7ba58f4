# Wheels for the musllinux_1_2 krunner environment, built with the same CPython build as
# krunner-python so that compiled extensions match its ABI.
# Build context: this package directory. Build arg ARCH: x86_64 or aarch64.
ARG PYTHON_VERSION=3.12.7
FROM python:${PYTHON_VERSION}-alpine

ARG ARCH=x86_64
RUN test "$(uname -m)" = "${ARCH}" && apk add --no-cache build-base linux-headers

COPY requirements.txt /krunner-build/requirements.txt
RUN python3 -m pip wheel --no-cache-dir --wheel-dir /krunner-build/wheels -r /krunner-build/requirements.txt
