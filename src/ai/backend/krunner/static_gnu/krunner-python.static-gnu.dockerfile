# CPython for the static-gnu krunner: a python-build-standalone build, which depends on nothing
# but glibc, unpacked into /opt/backend.ai, where the agent mounts the krunner volume.
# Build context: this package directory. Build arg ARCH: x86_64 or aarch64.
ARG ARCH=x86_64
FROM quay.io/pypa/manylinux2014_${ARCH}

ARG ARCH
ARG PYTHON_VERSION=3.12.7
ARG PBS_RELEASE=20241016
ARG PREFIX=/opt/backend.ai

# On x86_64 take the x86_64_v2 build: faster than the baseline one and it still runs on every
# server CPU from the last fifteen years.
RUN set -eu; \
    case "${ARCH}" in \
      x86_64) triple=x86_64_v2-unknown-linux-gnu ;; \
      aarch64) triple=aarch64-unknown-linux-gnu ;; \
      *) echo "unsupported ARCH ${ARCH}" >&2; exit 1 ;; \
    esac; \
    curl -fsSL -o /tmp/python.tar.gz \
      "https://github.com/astral-sh/python-build-standalone/releases/download/${PBS_RELEASE}/cpython-${PYTHON_VERSION}+${PBS_RELEASE}-${triple}-install_only.tar.gz"; \
    mkdir -p "${PREFIX}"; \
    tar -xzf /tmp/python.tar.gz -C "${PREFIX}" --strip-components=1; \
    rm /tmp/python.tar.gz; \
    "${PREFIX}/bin/python3" -m pip --version || "${PREFIX}/bin/python3" -m ensurepip
