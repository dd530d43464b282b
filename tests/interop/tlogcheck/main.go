// Command tlogcheck checks a C2SP tlog-tiles log with Go's checksum-database packages
// (golang.org/x/mod/sumdb/note and sumdb/tlog), an implementation independent of chainaudit.
//
// It opens the signed checkpoint with note.Open and the log's verifier key, reads hash tiles
// and entry bundles over HTTP from the log's prefix (a running `chainaudit serve`, or a static
// server over `chainaudit publish` output), recomputes the tree hash with tlog.TreeHash
// through tlog.TileHashReader (which authenticates every tile it reads against the checkpoint),
// and checks inclusion (tlog.CheckRecord) of random records and consistency (tlog.CheckTree)
// from an older size, with proofs it builds itself (tlog.ProveRecord, tlog.ProveTree).
//
// With -proofs FILE it also checks chainaudit's own proofs (what its bundles, tlog-proof files
// and witness requests carry): a JSON object {"size": N, "inclusion": {"<index>": [b64, ...]},
// "consistency": {"old": M, "proof": [b64, ...]}}. The records checked are then the file's
// indexes and the older size its "old"; each chainaudit proof is compared hash by hash with
// the one Go builds from the tiles, and checked with tlog.CheckRecord / tlog.CheckTree.
//
// Usage:
//
//	tlogcheck -base URL -checkpoint URL|FILE -vkey KEY [-records N] [-old SIZE] [-old-root B64] [-seed S] [-proofs FILE]
//
// It prints one JSON object and exits 0 when every check held, 1 when one failed, 2 on bad
// arguments.
package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/ioutil"
	"math/rand"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

const tileHeight = 8

var client = &http.Client{Timeout: 30 * time.Second}

// get GETs url; anything but 200 is an error.
func get(url string) ([]byte, error) {
	resp, err := client.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := ioutil.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return body, nil
}

// fetch reads path below the log's prefix base: an http(s) URL or a directory.
func fetch(base, path string) ([]byte, error) {
	if !strings.HasPrefix(base, "http://") && !strings.HasPrefix(base, "https://") {
		return ioutil.ReadFile(base + "/" + path)
	}
	return get(strings.TrimRight(base, "/") + "/" + path)
}

// c2spPath translates a Go tile path, tile/8/<L>/<N>[.p/<W>] or tile/8/data/<N>[.p/<W>],
// to the C2SP tlog-tiles one, tile/<L>/<N>[.p/<W>] or tile/entries/<N>[.p/<W>].
func c2spPath(t tlog.Tile) string {
	p := strings.TrimPrefix(t.Path(), fmt.Sprintf("tile/%d/", tileHeight))
	if strings.HasPrefix(p, "data/") {
		p = "entries/" + strings.TrimPrefix(p, "data/")
	}
	return "tile/" + p
}

// tileReader is a tlog.TileReader over the C2SP paths below base.
type tileReader struct {
	base    string
	mu      sync.Mutex
	fetched int
}

func (r *tileReader) Height() int { return tileHeight }

func (r *tileReader) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	data := make([][]byte, len(tiles))
	errs := make([]error, len(tiles))
	var wg sync.WaitGroup
	for i, t := range tiles {
		wg.Add(1)
		go func(i int, t tlog.Tile) {
			defer wg.Done()
			data[i], errs[i] = fetch(r.base, c2spPath(t))
		}(i, t)
	}
	wg.Wait()
	r.mu.Lock()
	r.fetched += len(tiles)
	r.mu.Unlock()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return data, nil
}

func (r *tileReader) SaveTiles(tiles []tlog.Tile, data [][]byte) {}

// entry returns the leaf data of entry i of a tree of size n, from its entry bundle.
func entry(base string, i, n int64) ([]byte, error) {
	t := tlog.Tile{H: tileHeight, L: -1, N: i >> tileHeight, W: 1 << tileHeight}
	if rest := n - t.N<<tileHeight; rest < int64(t.W) {
		t.W = int(rest)
	}
	bundle, err := fetch(base, c2spPath(t))
	if err != nil {
		return nil, err
	}
	want := int(i - t.N<<tileHeight)
	for k := 0; len(bundle) > 0; k++ {
		if len(bundle) < 2 {
			return nil, errors.New("entry bundle ends inside a length")
		}
		size := int(bundle[0])<<8 | int(bundle[1])
		if len(bundle) < 2+size {
			return nil, errors.New("entry bundle ends inside an entry")
		}
		if k == want {
			return bundle[2 : 2+size], nil
		}
		bundle = bundle[2+size:]
	}
	return nil, fmt.Errorf("entry bundle %s has no entry %d", c2spPath(t), want)
}

type recordResult struct {
	Index       int64  `json:"index"`
	LeafMatches bool   `json:"leaf_matches_tile"`
	InclusionOK bool   `json:"inclusion_ok"`
	ProofHashes int    `json:"proof_hashes"`
	Error       string `json:"error,omitempty"`
	// chainaudit's proof (with -proofs): the same hashes as Go's, and accepted by CheckRecord
	TheirsMatch *bool  `json:"theirs_match,omitempty"`
	TheirsOK    *bool  `json:"theirs_ok,omitempty"`
	TheirsError string `json:"theirs_error,omitempty"`
}

// theirProofs is chainaudit's proofs, read from the -proofs file.
type theirProofs struct {
	Size        int64               `json:"size"`
	Inclusion   map[string][]string `json:"inclusion"`
	Consistency struct {
		Old   int64    `json:"old"`
		Proof []string `json:"proof"`
	} `json:"consistency"`
}

func decodeHashes(b64 []string) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(b64))
	for k, s := range b64 {
		raw, err := base64.StdEncoding.DecodeString(s)
		if err != nil || len(raw) != tlog.HashSize {
			return nil, fmt.Errorf("bad proof hash %q", s)
		}
		copy(out[k][:], raw)
	}
	return out, nil
}

func sameHashes(a, b []tlog.Hash) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if a[k] != b[k] {
			return false
		}
	}
	return true
}

type result struct {
	Origin         string         `json:"origin"`
	Size           int64          `json:"size"`
	SignatureOK    bool           `json:"signature_ok"`
	TreeHashOK     bool           `json:"tree_hash_ok"`
	Records        []recordResult `json:"records"`
	OldSize        int64          `json:"old_size"`
	OldRootMatches *bool          `json:"old_root_matches,omitempty"`
	ConsistencyOK  bool           `json:"consistency_ok"`
	TheirsChecked  bool           `json:"theirs_checked"`
	TheirTreeMatch *bool          `json:"theirs_consistency_match,omitempty"`
	TheirTreeOK    *bool          `json:"theirs_consistency_ok,omitempty"`
	TilesFetched   int            `json:"tiles_fetched"`
	ProofMillis    float64        `json:"proof_ms_per_record"`
	OK             bool           `json:"ok"`
	Error          string         `json:"error,omitempty"`
}

func finish(r *result) {
	out, _ := json.Marshal(r)
	fmt.Println(string(out))
	if r.OK {
		os.Exit(0)
	}
	os.Exit(1)
}

func main() {
	base := flag.String("base", "", "the log's prefix: an http(s) URL or a directory")
	checkpoint := flag.String("checkpoint", "", "the signed checkpoint: a URL or a file (default: <base>/checkpoint)")
	vkey := flag.String("vkey", "", "the log's note verifier key <name>+<id>+<key>")
	records := flag.Int("records", 10, "random records to check inclusion of")
	oldSize := flag.Int64("old", -1, "the older size to check consistency from (default: random)")
	oldRoot := flag.String("old-root", "", "the root expected at -old, base64 (optional)")
	seed := flag.Int64("seed", 1, "random seed")
	proofsFile := flag.String("proofs", "", "chainaudit's proofs to compare and check (JSON)")
	flag.Parse()
	if *base == "" || *vkey == "" {
		fmt.Fprintln(os.Stderr, "tlogcheck: -base and -vkey are required")
		os.Exit(2)
	}
	res := &result{}
	var theirs *theirProofs
	var indexes []int64
	if *proofsFile != "" {
		raw, err := ioutil.ReadFile(*proofsFile)
		theirs = &theirProofs{}
		if err == nil {
			err = json.Unmarshal(raw, theirs)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "tlogcheck: bad -proofs:", err)
			os.Exit(2)
		}
		for key := range theirs.Inclusion {
			i, err := strconv.ParseInt(key, 10, 64)
			if err != nil {
				fmt.Fprintln(os.Stderr, "tlogcheck: bad -proofs index:", key)
				os.Exit(2)
			}
			indexes = append(indexes, i)
		}
		sort.Slice(indexes, func(a, b int) bool { return indexes[a] > indexes[b] })
		*records = len(indexes)
		*oldSize = theirs.Consistency.Old
		res.TheirsChecked = true
	}
	verifier, err := note.NewVerifier(*vkey)
	if err != nil {
		fmt.Fprintln(os.Stderr, "tlogcheck: bad -vkey:", err)
		os.Exit(2)
	}

	var msg []byte
	switch {
	case *checkpoint == "":
		msg, err = fetch(*base, "checkpoint")
	case strings.HasPrefix(*checkpoint, "http://") || strings.HasPrefix(*checkpoint, "https://"):
		msg, err = get(*checkpoint)
	default:
		msg, err = ioutil.ReadFile(*checkpoint)
	}
	if err != nil {
		res.Error = "reading the checkpoint: " + err.Error()
		finish(res)
	}
	n, err := note.Open(msg, note.VerifierList(verifier))
	if err != nil {
		res.Error = "note.Open: " + err.Error()
		finish(res)
	}
	res.SignatureOK = true
	lines := strings.Split(n.Text, "\n")
	if len(lines) < 4 {
		res.Error = "the checkpoint has fewer than three lines"
		finish(res)
	}
	res.Origin = lines[0]
	size, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil || size < 1 {
		res.Error = "bad tree size line " + strconv.Quote(lines[1])
		finish(res)
	}
	res.Size = size
	if theirs != nil && theirs.Size != size {
		res.Error = fmt.Sprintf("the proofs are for size %d, the checkpoint's is %d", theirs.Size, size)
		finish(res)
	}
	rootBytes, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(rootBytes) != tlog.HashSize {
		res.Error = "bad root hash line " + strconv.Quote(lines[2])
		finish(res)
	}
	var root tlog.Hash
	copy(root[:], rootBytes)

	tr := &tileReader{base: *base}
	reader := tlog.TileHashReader(tlog.Tree{N: size, Hash: root}, tr)
	th, err := tlog.TreeHash(size, reader)
	if err != nil {
		res.Error = "tlog.TreeHash: " + err.Error()
		finish(res)
	}
	res.TreeHashOK = th == root
	if !res.TreeHashOK {
		res.Error = "the tree hash from the tiles is not the checkpoint's root"
		finish(res)
	}

	rng := rand.New(rand.NewSource(*seed))
	allOK := true
	started := time.Now()
	for k := 0; k < *records; k++ {
		i := rng.Int63n(size)
		if theirs != nil {
			i = indexes[k]
		} else if k == 0 {
			i = size - 1 // the right edge: partial tiles and bundles
		}
		rr := recordResult{Index: i}
		data, err := entry(*base, i, size)
		if err == nil {
			h := tlog.RecordHash(data)
			var stored []tlog.Hash
			stored, err = reader.ReadHashes([]int64{tlog.StoredHashIndex(0, i)})
			if err == nil {
				rr.LeafMatches = stored[0] == h
				var proof tlog.RecordProof
				proof, err = tlog.ProveRecord(size, i, reader)
				if err == nil {
					rr.ProofHashes = len(proof)
					err = tlog.CheckRecord(proof, size, root, i, h)
					rr.InclusionOK = err == nil
					if theirs != nil {
						checkTheirRecord(&rr, theirs.Inclusion[strconv.FormatInt(i, 10)], proof, size, root, i, h)
						allOK = allOK && *rr.TheirsMatch && *rr.TheirsOK
					}
				}
			}
		}
		if err != nil {
			rr.Error = err.Error()
		}
		allOK = allOK && rr.LeafMatches && rr.InclusionOK
		res.Records = append(res.Records, rr)
	}
	if *records > 0 {
		res.ProofMillis = float64(time.Since(started).Microseconds()) / 1000 / float64(*records)
	}

	old := *oldSize
	if old < 0 {
		old = 1 + rng.Int63n(size)
	}
	res.OldSize = old
	oldHash, err := tlog.TreeHash(old, reader)
	if err == nil {
		if *oldRoot != "" {
			want, _ := base64.StdEncoding.DecodeString(*oldRoot)
			same := bytes.Equal(want, oldHash[:])
			res.OldRootMatches = &same
			allOK = allOK && same
		}
		var proof tlog.TreeProof
		proof, err = tlog.ProveTree(size, old, reader)
		if err == nil {
			err = tlog.CheckTree(proof, size, root, old, oldHash)
			res.ConsistencyOK = err == nil
			if theirs != nil {
				match, ok := false, false
				if hashes, derr := decodeHashes(theirs.Consistency.Proof); derr == nil {
					match = sameHashes(hashes, proof)
					ok = tlog.CheckTree(tlog.TreeProof(hashes), size, root, old, oldHash) == nil
				}
				res.TheirTreeMatch, res.TheirTreeOK = &match, &ok
				allOK = allOK && match && ok
				if (!match || !ok) && res.Error == "" {
					res.Error = "chainaudit's consistency proof is not Go's or fails tlog.CheckTree"
				}
			}
		}
	}
	if err != nil && res.Error == "" {
		res.Error = "consistency: " + err.Error()
	}
	res.TilesFetched = tr.fetched
	res.OK = allOK && res.ConsistencyOK && res.TreeHashOK && res.SignatureOK
	if !res.OK && res.Error == "" {
		for _, rr := range res.Records {
			if rr.Error != "" {
				res.Error = fmt.Sprintf("record %d: %s", rr.Index, rr.Error)
				break
			}
			if rr.TheirsError != "" {
				res.Error = fmt.Sprintf("record %d: chainaudit's proof: %s", rr.Index, rr.TheirsError)
				break
			}
		}
	}
	finish(res)
}

// checkTheirRecord compares chainaudit's inclusion proof of record i with Go's, hash by hash,
// and checks it with tlog.CheckRecord against the checkpoint's root.
func checkTheirRecord(rr *recordResult, b64 []string, ours tlog.RecordProof, size int64, root tlog.Hash, i int64, h tlog.Hash) {
	match, ok := false, false
	rr.TheirsMatch, rr.TheirsOK = &match, &ok
	hashes, err := decodeHashes(b64)
	if err != nil {
		rr.TheirsError = err.Error()
		return
	}
	match = sameHashes(hashes, ours)
	if err := tlog.CheckRecord(tlog.RecordProof(hashes), size, root, i, h); err != nil {
		rr.TheirsError = "tlog.CheckRecord: " + err.Error()
	} else {
		ok = true
	}
	if !match && rr.TheirsError == "" {
		rr.TheirsError = "not the proof Go builds from the tiles"
	}
}
