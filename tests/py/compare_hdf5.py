#!/usr/bin/env python3
"""Compare two HDF5 files by content: the same groups and datasets with equal
values, dtypes and shapes, and equal attributes.

Usage: compare_hdf5.py A B

Exits 1 printing every difference. Byte equality is too strict for files
written at different times (HDF5 object headers may carry times).
"""
import sys

import h5py
import numpy as np


def items(f):
    found = {}

    def visit(name, obj):
        found[name] = obj

    f.visititems(visit)
    return found


def same(a, b):
    try:
        return np.array_equal(np.asarray(a), np.asarray(b), equal_nan=True)
    except TypeError:
        return np.array_equal(np.asarray(a), np.asarray(b))


def attrs_differ(name, a, b, out):
    if set(a.attrs) != set(b.attrs):
        out.append(f"{name}: attributes {sorted(a.attrs)} vs {sorted(b.attrs)}")
        return
    for key in a.attrs:
        if not same(a.attrs[key], b.attrs[key]):
            out.append(f"{name}@{key}: {a.attrs[key]!r} vs {b.attrs[key]!r}")


def main(argv):
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    out = []
    with h5py.File(argv[0], "r") as fa, h5py.File(argv[1], "r") as fb:
        attrs_differ("/", fa, fb, out)
        ia, ib = items(fa), items(fb)
        if set(ia) != set(ib):
            out.append(f"objects differ: {sorted(set(ia) ^ set(ib))}")
        for name in sorted(set(ia) & set(ib)):
            a, b = ia[name], ib[name]
            attrs_differ(name, a, b, out)
            if isinstance(a, h5py.Dataset):
                if not isinstance(b, h5py.Dataset):
                    out.append(f"{name}: dataset vs group")
                elif a.dtype != b.dtype or a.shape != b.shape:
                    out.append(f"{name}: {a.dtype}{a.shape} vs {b.dtype}{b.shape}")
                elif not same(a[()], b[()]):
                    out.append(f"{name}: values differ")
    for line in out:
        print(line)
    return 1 if out else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
