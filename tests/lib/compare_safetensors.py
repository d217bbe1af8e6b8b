"""Compares two safetensors files of float32 tensors: the largest absolute difference of any
value, against a tolerance. Standard library only (the tests run on a bare Python).
    compare_safetensors.py A B TOLERANCE   -> exit 0 and "within tolerance", or exit 1."""
import array
import json
import struct
import sys


def load(path):
    with open(path, "rb") as f:
        size = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(size))
        data = f.read()
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] != "F32":
            sys.exit(f"{path}: {name} is {info['dtype']}, this comparison reads F32 only")
        start, end = info["data_offsets"]
        values = array.array("f")
        values.frombytes(data[start:end])
        tensors[name] = values
    return tensors


def main():
    a, b, tolerance = load(sys.argv[1]), load(sys.argv[2]), float(sys.argv[3])
    if a.keys() != b.keys():
        sys.exit(f"the files hold different tensors: {sorted(a.keys() ^ b.keys())}")
    worst, where = 0.0, ""
    for name in a:
        if len(a[name]) != len(b[name]):
            sys.exit(f"{name}: {len(a[name])} values against {len(b[name])}")
        for x, y in zip(a[name], b[name]):
            if abs(x - y) > worst:
                worst, where = abs(x - y), name
    verdict = "within tolerance" if worst <= tolerance else "OUT OF TOLERANCE"
    print(f"largest difference {worst:.3g} (in {where or '-'}), tolerance {tolerance:g}: {verdict}")
    sys.exit(0 if worst <= tolerance else 1)


main()
