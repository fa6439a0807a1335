FROM python:3.11-slim
# What pydockerd drives on the host side: netlink/iproute2 for bridges and veths,
# nftables/iptables for port publishing, tini for --init, busybox-static for the test image.
RUN apt-get update \
    && apt-get install -y --no-install-recommends iproute2 nftables iptables tini busybox-static kmod \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml ./
COPY api ./api
COPY daemon ./daemon
COPY storage ./storage
COPY network ./network
COPY runtime ./runtime
RUN pip install --no-cache-dir . && rm -rf /src
WORKDIR /
VOLUME /var/lib/pydockerd
STOPSIGNAL SIGTERM
CMD ["pydockerd", "-H", "unix:///run/pydockerd/pydockerd.sock", "-H", "tcp://127.0.0.1:2375"]
