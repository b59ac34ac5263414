# ferry's operator image. Build it with hack/image, which needs no registry: it makes the base from
# Debian's packages (debootstrap: python3, python3-venv, ca-certificates), passes it as BASE, and
# gives this file a build context holding the wheels of ferry and of its dependencies in wheels/, so
# the build itself needs no network (the lab's Docker hosts have none beyond the lab).
# Plain Dockerfile syntax only (no heredocs, --mount or COPY --chmod): Docker 20.10's classic builder
# builds it as well as BuildKit does.
ARG BASE

FROM ${BASE} AS build
COPY wheels /wheels
# Then what nothing imports at run time goes: pip, setuptools and the kubernetes client's asyncio
# copy (kubernetes/aio, 68 MB of the venv's 210 MB; ferry and kopf use neither), and every ferry
# module is imported once to prove it.
RUN python3 -m venv /opt/ferry \
 && /opt/ferry/bin/pip install -q --disable-pip-version-check --no-index --find-links /wheels ferry \
 && /opt/ferry/bin/pip uninstall -q -y pip setuptools \
 && rm -rf /opt/ferry/lib/python3.11/site-packages/kubernetes/aio \
 && /opt/ferry/bin/python -c 'import importlib, pkgutil, ferry; [importlib.import_module(m.name) for m in pkgutil.walk_packages(ferry.__path__, "ferry.") if not m.name.endswith("__main__")]' \
 && /opt/ferry/bin/ferry --help >/dev/null

FROM ${BASE}
ARG VERSION=unknown
LABEL org.opencontainers.image.title=ferry org.opencontainers.image.version=${VERSION}
# A passwd entry for uid 10001 (getpass/pwd lookups work); its home is /tmp, the one writable place.
RUN useradd --no-log-init --no-create-home --uid 10001 --user-group --home-dir /tmp \
        --shell /usr/sbin/nologin ferry
COPY --from=build /opt/ferry /opt/ferry
# Read-only root filesystem: the Deployment mounts an emptyDir at /tmp (HOME and TMPDIR point there);
# the .pyc files were written at install time, so Python writes none at run time.
ENV PATH=/opt/ferry/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    HOME=/tmp TMPDIR=/tmp PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
USER 10001:10001
WORKDIR /tmp
ENTRYPOINT ["/opt/ferry/bin/ferry"]
CMD ["--help"]
