# registrator: keeps the local Consul agent in step with this host's Docker containers.
#
# From a checkout, with nothing else installed:
#   docker build -t registrator .
#   docker run -d --name registrator --net=host --restart=always \
#       -v /var/run/docker.sock:/tmp/docker.sock registrator -ip 10.0.0.5 consul://127.0.0.1:8500
#
# The build stage builds the wheel from the source and installs it, with its dependencies from
# the package index (PyPI), into a venv; the image holds only that venv. Build arguments:
#   BASE_IMAGE  any Debian-like image whose `python3` is 3.11 or newer and has the venv module.
#               Both stages use it, so the venv's interpreter link resolves in the final image.
#   WHEEL       a wheel in the build context to install instead of building one from the source,
#               such as the release's: python3 -m build, then
#               docker build --build-arg WHEEL=dist/registrator-<version>-py3-none-any.whl -t registrator .
#   VERSION     the image's version label. Its default must be the version in pyproject.toml:
#               a Dockerfile cannot read a label from a file, so the version is written here
#               too, and the build fails if the two differ or if the installed registrator
#               reports another version.
ARG BASE_IMAGE=python:3.11-slim-bookworm
ARG VERSION=0.1.0

FROM ${BASE_IMAGE} AS builder
ARG VERSION
ARG WHEEL=
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
# First what changes seldom, in layers a change to the source alone reuses: the version check,
# the build backend pyproject.toml names (in a venv of its own) and the runtime dependencies.
COPY pyproject.toml ./
RUN python3 -c 'import sys, tomllib; \
config = tomllib.load(open("pyproject.toml", "rb")); \
version = config["project"]["version"]; \
version == sys.argv[1] or sys.exit(f"VERSION {sys.argv[1]} (the build argument, or its default in the Dockerfile) is not the version in pyproject.toml, {version}"); \
open("/tmp/build-requires.txt", "w").write("\n".join(config["build-system"]["requires"]) + "\n"); \
open("/tmp/requires.txt", "w").write("\n".join(config["project"]["dependencies"]) + "\n")' "${VERSION}" \
    && python3 -m venv /opt/build-backend \
    && /opt/build-backend/bin/pip install --no-cache-dir -r /tmp/build-requires.txt \
    && python3 -m venv /opt/registrator \
    && /opt/registrator/bin/pip install --no-cache-dir -r /tmp/requires.txt
COPY . ./
# The installed package must report the version the label will carry.
RUN mkdir /tmp/wheels \
    && if [ -n "${WHEEL}" ]; then \
        echo "installing the wheel ${WHEEL}" && cp "${WHEEL}" /tmp/wheels/; \
    else \
        /opt/build-backend/bin/pip wheel --no-cache-dir --no-deps --no-build-isolation --wheel-dir /tmp/wheels .; \
    fi \
    && /opt/registrator/bin/pip install --no-cache-dir --no-deps /tmp/wheels/*.whl \
    && /opt/registrator/bin/pip check \
    && installed="$(/opt/registrator/bin/registrator -version)" \
    && if [ "${installed}" != "registrator ${VERSION}" ]; then \
        echo "the installed package reports '${installed}', not 'registrator ${VERSION}'" >&2; \
        exit 1; \
    fi

FROM ${BASE_IMAGE}
ARG BASE_IMAGE
ARG VERSION
LABEL org.opencontainers.image.title="registrator" \
      org.opencontainers.image.description="Keeps the local Consul agent in step with the Docker containers on a host" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.base.name="${BASE_IMAGE}"
# Only the venv: no source, no wheel, no build backend, no pip cache.
COPY --from=builder /opt/registrator /opt/registrator
ENV PATH=/opt/registrator/bin:${PATH} PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
# Runs as root on purpose: it reads the Docker socket mounted at /tmp/docker.sock, which belongs
# to root and the host's docker group (whose GID differs between hosts). Access to that socket is
# root on the host anyway, so a non-root user here would not reduce what the process can do. To
# run as another user: docker run --user 65534:65534 --group-add "$(stat -c %g /var/run/docker.sock)" ...
ENTRYPOINT ["registrator"]
