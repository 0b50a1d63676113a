"""Write a few MNIST test digits as PNG files that look like scans: dark ink on white paper, 112x112.

They go through the server's MNIST-style preprocessing (invert, crop, scale, centre), so the demo
shows the path a phone photo or a canvas drawing takes. Usage: sample_digits.py DATA_DIR OUT_DIR [COUNT]
"""
import sys
from pathlib import Path

from PIL import Image

from mnist_client.idx import read_idx


def main() -> int:
    data_dir, out_dir = Path(sys.argv[1]), Path(sys.argv[2])
    count = int(sys.argv[3]) if len(sys.argv) > 3 else 6
    images = read_idx(data_dir / "t10k-images-idx3-ubyte.gz", count=count)
    labels = read_idx(data_dir / "t10k-labels-idx1-ubyte.gz", count=count)
    out_dir.mkdir(parents=True, exist_ok=True)
    for index, (pixels, label) in enumerate(zip(images, labels)):
        scan = Image.fromarray(255 - pixels).resize((112, 112), Image.BICUBIC)
        scan.save(out_dir / f"test{index:02d}-true{int(label)}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
