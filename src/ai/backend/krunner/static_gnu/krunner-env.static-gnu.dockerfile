# The static-gnu krunner environment: the krunner-python image with the pinned packages
# installed from the krunner-wheels image, packed into /krunner-build/image.tar, which becomes
# krunner-env.static-gnu.<arch>.tar.xz.
# Build context: this package directory. Build arg ARCH: x86_64 or aarch64.
ARG ARCH=x86_64
ARG PYTHON_IMAGE=lablup/backendai-krunner-python:static-gnu-${ARCH}
ARG WHEELS_IMAGE=lablup/backendai-krunner-wheels:static-gnu-${ARCH}
FROM ${WHEELS_IMAGE} AS wheels
FROM ${PYTHON_IMAGE}

ARG PREFIX=/opt/backend.ai
# The agent names the volume after this number: keep it equal to krunner-version.static-gnu.txt
# and raise both whenever the environment changes.
LABEL ai.backend.krunner.version=100

COPY --from=wheels /krunner-build/wheels /krunner-build/wheels
COPY requirements.txt krunner-python.static-gnu.txt /krunner-build/
RUN "${PREFIX}/bin/python3" -m pip install \
      --no-cache-dir --no-index --find-links /krunner-build/wheels -r /krunner-build/requirements.txt

# The agent bind-mounts the kernel runner and the helpers into site-packages at a path it builds
# from krunner-python.static-gnu.txt: refuse to pack an interpreter that disagrees with it.
RUN set -eu; \
    site_packages="$("${PREFIX}/bin/python3" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')"; \
    expected="${PREFIX}/lib/python$(cat /krunner-build/krunner-python.static-gnu.txt)/site-packages"; \
    if [ "${site_packages}" != "${expected}" ]; then \
      echo "site-packages is ${site_packages}, the agent expects ${expected}" >&2; exit 1; \
    fi; \
    mkdir -p "${site_packages}/ai/backend/kernel" "${site_packages}/ai/backend/helpers"; \
    ln -sf python3 "${PREFIX}/bin/python"; \
    tar -C "${PREFIX}" -cf /krunner-build/image.tar .
