# registrator: keeps the local Consul agent in step with this host's Docker containers.
#
# The image installs the wheel `python3 -m build` writes to dist/; VERSION (the version in
# pyproject.toml, the one place it is written) names that wheel and becomes the version label:
#   python3 -m build
#   docker build --build-arg VERSION="$(python3 -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')" -t registrator .
#   docker run -d --name registrator --net=host --restart=always \
#       -v /var/run/docker.sock:/tmp/docker.sock registrator -ip 10.0.0.5 consul://127.0.0.1:8500
#
# BASE_IMAGE: any Debian-like image whose `python3` is 3.11 or newer and has the venv module.
# Both stages use it, so the venv's interpreter link resolves in the final image.
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS builder
ARG VERSION
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN if [ -z "${VERSION}" ]; then \
        echo "build arg VERSION is required: the version in pyproject.toml, whose wheel is in dist/" >&2; \
        exit 1; \
    fi \
    && python3 -m venv /opt/registrator
COPY dist/registrator-${VERSION}-py3-none-any.whl /tmp/
# The installed package must report the version the label will carry.
RUN /opt/registrator/bin/pip install --no-cache-dir "/tmp/registrator-${VERSION}-py3-none-any.whl" \
    && test "$(/opt/registrator/bin/registrator -version)" = "registrator ${VERSION}"

FROM ${BASE_IMAGE}
ARG BASE_IMAGE
ARG VERSION
LABEL org.opencontainers.image.title="registrator" \
      org.opencontainers.image.description="Keeps the local Consul agent in step with the Docker containers on a host" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.base.name="${BASE_IMAGE}"
# Only the venv: no wheel, no pip cache, no build tools.
COPY --from=builder /opt/registrator /opt/registrator
ENV PATH=/opt/registrator/bin:${PATH} PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
# Runs as root on purpose: it reads the Docker socket mounted at /tmp/docker.sock, which belongs
# to root and the host's docker group (whose GID differs between hosts). Access to that socket is
# root on the host anyway, so a non-root user here would not reduce what the process can do. To
# run as another user: docker run --user 65534:65534 --group-add "$(stat -c %g /var/run/docker.sock)" ...
ENTRYPOINT ["registrator"]
