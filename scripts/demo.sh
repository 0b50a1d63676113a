#!/usr/bin/env bash
# make demo: train (or reuse) two models (MNIST digits, Fashion-MNIST clothes), serve both from one server,
# classify sample images through the client and over HTTP, stop.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
DATA_DIR=${MNIST_DATA_DIR:-}
if [ -z "$DATA_DIR" ] && [ -f ../shared/data/mnist/t10k-images-idx3-ubyte.gz ]; then
  DATA_DIR=../shared/data/mnist
fi
DATA_DIR=${DATA_DIR:-$HOME/.cache/mnist-serving/mnist}   # the trainer downloads into it when empty
FASHION_DATA_DIR=${FASHION_MNIST_DATA_DIR:-}
if [ -z "$FASHION_DATA_DIR" ] && [ -f ../shared/data/fashion-mnist/t10k-images-idx3-ubyte.gz ]; then
  FASHION_DATA_DIR=../shared/data/fashion-mnist
fi
FASHION_DATA_DIR=${FASHION_DATA_DIR:-$HOME/.cache/mnist-serving/fashion-mnist}
MODEL_DIR=${DEMO_MODEL_DIR:-.cache/models/mnist}
FASHION_MODEL_DIR=${DEMO_FASHION_MODEL_DIR:-.cache/models/fashion-mnist}
FASHION_CLASSES="T-shirt/top,Trouser,Pullover,Dress,Coat,Sandal,Shirt,Sneaker,Bag,Ankle boot"
PORT=${DEMO_PORT:-8500}
HTTP_PORT=${DEMO_HTTP_PORT:-8501}
# A short training budget keeps the demo quick; `DEMO_TRAIN_ARGS= make demo` uses the full default recipe.
TRAIN_ARGS=${DEMO_TRAIN_ARGS---epochs 1}
TARGET=127.0.0.1:$PORT
mkdir -p .cache

echo "== 1. train, or reuse the newest version in $MODEL_DIR and in $FASHION_MODEL_DIR"
# shellcheck disable=SC2086
$BIN/mnist-trainer --data-dir "$DATA_DIR" --model-dir "$MODEL_DIR" --skip-if-exists $TRAIN_ARGS
# shellcheck disable=SC2086
$BIN/mnist-trainer --dataset fashion-mnist --data-dir "$FASHION_DATA_DIR" --model-dir "$FASHION_MODEL_DIR" \
  --skip-if-exists $TRAIN_ARGS
for base in "$MODEL_DIR" "$FASHION_MODEL_DIR"; do   # what was trained, as pictures
  newest="$base/$(ls "$base" | grep -E '^[0-9]+$' | sort -n | tail -1)"
  echo "   report of $newest: $(ls "$newest"/report/*.png 2>/dev/null | tr '\n' ' ')"
done

echo "== 2. start the server on $TARGET (log: .cache/demo-server.log)"
$BIN/mnist-server --model-dir "$MODEL_DIR" --model fashion-mnist="$FASHION_MODEL_DIR" \
  --host 127.0.0.1 --port "$PORT" --http-port "$HTTP_PORT" \
  >.cache/demo-server.log 2>&1 &
server_pid=$!
stop_server() {
  kill -TERM "$server_pid" 2>/dev/null && wait "$server_pid" || true
  echo "== server stopped"
}
trap stop_server EXIT
for _ in $(seq 60); do
  $BIN/mnist-client --target "$TARGET" health >/dev/null 2>&1 && break
  kill -0 "$server_pid" 2>/dev/null || { cat .cache/demo-server.log; exit 1; }
  sleep 1
done
$BIN/mnist-client --target "$TARGET" health

echo "== 3. what it serves"
$BIN/mnist-client --target "$TARGET" info

echo "== 4. classify scanned-looking PNG digits (file names carry the true label)"
$BIN/python scripts/sample_digits.py "$DATA_DIR" .cache/demo-digits
$BIN/mnist-client --target "$TARGET" classify .cache/demo-digits/*.png

echo "== 5. classify 1,000 test images straight from the IDX file"
$BIN/mnist-client --target "$TARGET" classify --count 1000 \
  --idx "$DATA_DIR/t10k-images-idx3-ubyte.gz" --labels "$DATA_DIR/t10k-labels-idx1-ubyte.gz"

echo "== 6. Fashion-MNIST from the same server: product photos (dark on white), then 1,000 test images"
$BIN/python scripts/sample_digits.py "$FASHION_DATA_DIR" .cache/demo-products 6 "$FASHION_CLASSES"
$BIN/mnist-client --target "$TARGET" --model fashion-mnist classify .cache/demo-products/*.png
$BIN/mnist-client --target "$TARGET" --model fashion-mnist classify --count 1000 \
  --idx "$FASHION_DATA_DIR/t10k-images-idx3-ubyte.gz" --labels "$FASHION_DATA_DIR/t10k-labels-idx1-ubyte.gz"

echo "== 7. the same server over HTTP: the PNG file as it is (curl --data-binary @FILE works the same)"
$BIN/python - "http://127.0.0.1:$HTTP_PORT" .cache/demo-digits/test00-true7.png <<'PY'
import json, sys, urllib.request
base, path = sys.argv[1], sys.argv[2]
request = urllib.request.Request(base + "/api/v1/classify", data=open(path, "rb").read(),
                                 headers={"Content-Type": "image/png"})
answer = json.load(urllib.request.urlopen(request, timeout=30))
best = answer["predictions"][0]
print(f"POST /api/v1/classify {path} -> {best['label']} ({max(best['probabilities']):.4f}), "
      f"model {answer['model_name']} version {answer['model_version']}")
print("GET /v1/models/mnist ->", urllib.request.urlopen(base + "/v1/models/mnist", timeout=30).read().decode())
print(f"(while a server runs, the page at {base}/ classifies what you draw)")
PY
