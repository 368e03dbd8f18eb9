#!/usr/bin/env python3
"""Writes seed inputs for the `decode` fuzz target from real captures (the public corpus).

Usage: fuzz/make_decode_seeds.py CORPUS_DIR [OUT_DIR]   (default OUT_DIR: fuzz/corpus/decode)
Each seed: byte 0 = index of the link type in the target's LINKS table, then records of
[gap seconds (1), length (2, big-endian), packet bytes], up to 8 consecutive packets.
Files are normalised to classic pcap with tcpdump; seeds stay out of git (fuzz/.gitignore).
"""
import os
import struct
import subprocess
import sys

LINKS = [0, 1, 12, 14, 101, 108, 113, 228, 229, 276, 147]
CHUNK = 8


def packets(path):
    raw = subprocess.run(["tcpdump", "-r", path, "-w", "-"], capture_output=True).stdout
    if len(raw) < 24:
        return None, []
    magic = raw[:4]
    endian = "<" if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    link = struct.unpack(endian + "I", raw[20:24])[0]
    out, off = [], 24
    while off + 16 <= len(raw):
        sec, _usec, caplen, _len = struct.unpack(endian + "IIII", raw[off:off + 16])
        out.append((sec, raw[off + 16:off + 16 + caplen]))
        off += 16 + caplen
    return link, out


def main():
    src = sys.argv[1]
    dst = sys.argv[2] if len(sys.argv) > 2 else os.path.join(os.path.dirname(__file__), "corpus", "decode")
    os.makedirs(dst, exist_ok=True)
    n = 0
    for root, _dirs, files in os.walk(src):
        for name in sorted(files):
            if not name.endswith((".pcap", ".pcapng", ".cap")) and "." in name:
                continue
            link, pkts = packets(os.path.join(root, name))
            if link not in LINKS or not pkts:
                continue
            for i in range(0, min(len(pkts), 20 * CHUNK), CHUNK):
                seed = bytearray([LINKS.index(link)])
                prev = pkts[i][0]
                for sec, data in pkts[i:i + CHUNK]:
                    data = data[:2048]
                    seed += bytes([min(max(sec - prev, 0), 7)]) + struct.pack(">H", len(data)) + data
                    prev = sec
                with open(os.path.join(dst, f"{name}-{i}"), "wb") as f:
                    f.write(seed)
                n += 1
    print(f"{n} seeds in {dst}")


if __name__ == "__main__":
    main()
