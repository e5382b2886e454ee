// Command tlogcheck reads a hashtrail ledger served as C2SP tlog-tiles (over HTTP or
// from a published folder) with nothing but Go's golang.org/x/mod/sumdb/note and
// golang.org/x/mod/sumdb/tlog: code hashtrail did not write. It verifies the checkpoint's
// signature with the ledger's verifier key, authenticates hash tiles against the signed
// root (tlog.TileHashReader), proves inclusion of the requested records from their
// entry bundles, optionally checks every entry bundle, and proves consistency with an
// older signed checkpoint.
//
//	tlogcheck -vkey VKEY -log URL_OR_DIR [-records 0,5,300] [-all] [-old FILE]
//
// Exit 0 and one "ok" line per check; exit 1 with the reason on the first failure.
package main

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

const height = 8

var logBase string

func fetch(path string) ([]byte, error) {
	if strings.HasPrefix(logBase, "http://") || strings.HasPrefix(logBase, "https://") {
		resp, err := http.Get(strings.TrimSuffix(logBase, "/") + "/" + path)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 {
			return nil, fmt.Errorf("GET %s: %s", path, resp.Status)
		}
		return io.ReadAll(io.LimitReader(resp.Body, 1<<24))
	}
	return os.ReadFile(filepath.Join(logBase, filepath.FromSlash(path)))
}

// c2spPath is the tlog-tiles path of a Go tile: Go writes tile/<H>/<L>/<N>, C2SP
// tlog-tiles has a fixed height of 8 and drops it; entry bundles live at tile/entries.
func c2spPath(t tlog.Tile) string {
	p := t.Path()
	prefix := fmt.Sprintf("tile/%d/", height)
	if !strings.HasPrefix(p, prefix) {
		panic("unexpected tile path " + p)
	}
	rest := strings.TrimPrefix(p, prefix)
	if t.L == -1 {
		rest = "entries" + strings.TrimPrefix(rest, "data")
	}
	return "tile/" + rest
}

type tileReader struct{}

func (tileReader) Height() int { return height }

func (tileReader) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(tiles))
	for i, t := range tiles {
		data, err := fetch(c2spPath(t))
		if err != nil {
			return nil, err
		}
		if len(data) != t.W*tlog.HashSize {
			return nil, fmt.Errorf("%s: %d bytes, want %d", c2spPath(t), len(data), t.W*tlog.HashSize)
		}
		out[i] = data
	}
	return out, nil
}

func (tileReader) SaveTiles([]tlog.Tile, [][]byte) {}

// openCheckpoint verifies a signed checkpoint note and parses its body
// (c2sp.org/tlog-checkpoint: origin, size, base64 root).
func openCheckpoint(msg []byte, v note.Verifier) (string, tlog.Tree, error) {
	n, err := note.Open(msg, note.VerifierList(v))
	if err != nil {
		return "", tlog.Tree{}, err
	}
	lines := strings.Split(n.Text, "\n")
	if len(lines) < 4 || lines[len(lines)-1] != "" {
		return "", tlog.Tree{}, fmt.Errorf("checkpoint body has %d lines", len(lines))
	}
	size, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil || size < 0 {
		return "", tlog.Tree{}, fmt.Errorf("bad tree size %q", lines[1])
	}
	root, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(root) != tlog.HashSize {
		return "", tlog.Tree{}, fmt.Errorf("bad root hash %q", lines[2])
	}
	var h tlog.Hash
	copy(h[:], root)
	return lines[0], tlog.Tree{N: size, Hash: h}, nil
}

// bundle returns the entries of the entry bundle holding record n in a tree of size N.
func bundle(n, size int64) ([][]byte, error) {
	t := tlog.Tile{H: height, L: -1, N: n / 256, W: 256}
	if rem := size - t.N*256; rem < 256 {
		t.W = int(rem)
	}
	data, err := fetch(c2spPath(t))
	if err != nil {
		return nil, err
	}
	var out [][]byte
	for len(data) > 0 {
		if len(data) < 2 {
			return nil, fmt.Errorf("%s: truncated length", c2spPath(t))
		}
		l := int(binary.BigEndian.Uint16(data))
		if len(data) < 2+l {
			return nil, fmt.Errorf("%s: truncated entry", c2spPath(t))
		}
		out = append(out, data[2:2+l])
		data = data[2+l:]
	}
	if len(out) != t.W {
		return nil, fmt.Errorf("%s: %d entries, want %d", c2spPath(t), len(out), t.W)
	}
	return out, nil
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "tlogcheck: "+format+"\n", args...)
	os.Exit(1)
}

func main() {
	vkey := flag.String("vkey", "", "the ledger's verifier key (name+hash+base64)")
	flag.StringVar(&logBase, "log", "", "the log's URL or published folder")
	records := flag.String("records", "", "comma-separated record indexes to prove")
	all := flag.Bool("all", false, "check every entry bundle against the authenticated tiles")
	old := flag.String("old", "", "an older signed checkpoint file to prove consistency with")
	flag.Parse()

	v, err := note.NewVerifier(*vkey)
	if err != nil {
		fail("verifier key: %v", err)
	}
	msg, err := fetch("checkpoint")
	if err != nil {
		fail("checkpoint: %v", err)
	}
	origin, tree, err := openCheckpoint(msg, v)
	if err != nil {
		fail("checkpoint: %v", err)
	}
	if origin != v.Name() {
		fail("checkpoint origin %q is not the key's name %q", origin, v.Name())
	}
	fmt.Printf("ok checkpoint %s size %d signed by %s\n", origin, tree.N, v.Name())
	thr := tlog.TileHashReader(tree, tileReader{})
	if h, err := tlog.TreeHash(tree.N, thr); err != nil || h != tree.Hash {
		fail("tree hash from tiles: %v", err)
	}

	if *records != "" {
		for _, s := range strings.Split(*records, ",") {
			n, err := strconv.ParseInt(s, 10, 64)
			if err != nil || n < 0 || n >= tree.N {
				fail("record %q is not in a tree of size %d", s, tree.N)
			}
			entries, err := bundle(n, tree.N)
			if err != nil {
				fail("record %d: %v", n, err)
			}
			leaf := entries[n%256]
			if !bytes.HasPrefix(leaf, []byte("HTL1")) {
				fail("record %d is not a hashtrail leaf", n)
			}
			p, err := tlog.ProveRecord(tree.N, n, thr)
			if err != nil {
				fail("record %d: %v", n, err)
			}
			if err := tlog.CheckRecord(p, tree.N, tree.Hash, n, tlog.RecordHash(leaf)); err != nil {
				fail("record %d: %v", n, err)
			}
			fmt.Printf("ok record %d included (%d proof hashes)\n", n, len(p))
		}
	}

	if *all {
		for start := int64(0); start < tree.N; start += 256 {
			entries, err := bundle(start, tree.N)
			if err != nil {
				fail("%v", err)
			}
			idx := make([]int64, len(entries))
			for i := range entries {
				idx[i] = tlog.StoredHashIndex(0, start+int64(i))
			}
			hashes, err := thr.ReadHashes(idx)
			if err != nil {
				fail("tiles for records %d..: %v", start, err)
			}
			for i, e := range entries {
				if tlog.RecordHash(e) != hashes[i] {
					fail("record %d: entry bundle does not hash to its level-0 tile", start+int64(i))
				}
			}
		}
		fmt.Printf("ok all %d entries match the authenticated tiles\n", tree.N)
	}

	if *old != "" {
		omsg, err := os.ReadFile(*old)
		if err != nil {
			fail("old checkpoint: %v", err)
		}
		oorigin, otree, err := openCheckpoint(omsg, v)
		if err != nil || oorigin != origin {
			fail("old checkpoint: %v (origin %q)", err, oorigin)
		}
		if otree.N > tree.N {
			fail("old checkpoint size %d is larger than %d", otree.N, tree.N)
		}
		p, err := tlog.ProveTree(tree.N, otree.N, thr)
		if err != nil {
			fail("consistency: %v", err)
		}
		if err := tlog.CheckTree(p, tree.N, tree.Hash, otree.N, otree.Hash); err != nil {
			fail("consistency %d -> %d: %v", otree.N, tree.N, err)
		}
		fmt.Printf("ok consistent %d -> %d (%d proof hashes)\n", otree.N, tree.N, len(p))
	}
}
