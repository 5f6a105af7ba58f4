# CPython for the musllinux_1_2 krunner: the official python:<version>-alpine build, moved to
# /opt/backend.ai, where the agent mounts the krunner volume.
# Build context: this package directory. Build arg ARCH: x86_64 or aarch64 (must match the
# platform being built, e.g. --platform linux/arm64 for aarch64).
ARG PYTHON_VERSION=3.12.7
FROM python:${PYTHON_VERSION}-alpine

ARG ARCH=x86_64
ARG PREFIX=/opt/backend.ai

# Rewrite the shebangs of every script that points at the old location, whatever its name, and
# check that the moved interpreter still finds its library and standard library.
RUN set -eu; \
    test "$(uname -m)" = "${ARCH}"; \
    mkdir -p "${PREFIX}"; \
    mv /usr/local/* "${PREFIX}/"; \
    for script in "${PREFIX}"/bin/*; do \
      if [ -f "${script}" ] && head -n 1 "${script}" | grep -q '^#!/usr/local/bin/'; then \
        sed -i "1s|^#!/usr/local/bin/|#!${PREFIX}/bin/|" "${script}"; \
      fi; \
    done; \
    "${PREFIX}/bin/python3" -c 'import sys, ssl, sqlite3, zlib; print(sys.prefix)' \
      | grep -qx "${PREFIX}"
