package tables_test

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"unicode/utf16"
)

// azureLimits passes every call on to Azurite and keeps each write Azure would refuse and Azurite takes (Azurite's
// support matrix: no entity size limit, no 4 MiB transaction limit, cross-partition transactions accepted): an
// entity over 1 MiB (Microsoft's size formula), a property over 64 KiB, more than 252 properties, a transaction
// of more than 100 operations or a body over 4 MiB, one that spans partitions or names an entity twice.
type azureLimits struct {
	mu         sync.Mutex
	violations []string
	batches    int
	maxBatch   int // the largest transaction body seen, in bytes
}

func (l *azureLimits) refuse(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.violations) < 20 {
		l.violations = append(l.violations, fmt.Sprintf(format, args...))
	}
}

func (l *azureLimits) take() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.violations
}

var keysInPath = regexp.MustCompile(`\(PartitionKey='((?:[^']|'')*)',RowKey='((?:[^']|'')*)'\)$`)

func (l *azureLimits) Do(req *http.Request) (*http.Response, error) {
	if req.Body == nil || req.Method == http.MethodGet || req.Method == http.MethodDelete {
		return http.DefaultTransport.RoundTrip(req)
	}
	body, err := io.ReadAll(req.Body)
	if err != nil {
		return nil, err
	}
	req.Body = io.NopCloser(bytes.NewReader(body))
	switch {
	case strings.HasSuffix(req.URL.Path, "/$batch"):
		l.checkBatch(req.Header.Get("Content-Type"), body)
	case strings.HasSuffix(req.URL.Path, "/Tables"):
	default:
		l.checkEntity(req.URL.Path, body)
	}
	return http.DefaultTransport.RoundTrip(req)
}

func (l *azureLimits) checkBatch(contentType string, body []byte) {
	l.mu.Lock()
	l.batches++
	l.maxBatch = max(l.maxBatch, len(body))
	l.mu.Unlock()
	if len(body) > 4<<20 {
		l.refuse("transaction body of %d bytes, over 4 MiB", len(body))
	}
	outer, err := parts(contentType, body)
	if err != nil || len(outer) != 1 {
		l.refuse("transaction: %v (%d parts)", err, len(outer))
		return
	}
	ops, err := parts(outer[0].ct, outer[0].body)
	if err != nil {
		l.refuse("changeset: %v", err)
		return
	}
	if len(ops) > 100 {
		l.refuse("transaction of %d operations, over 100", len(ops))
	}
	pks, rows := map[string]bool{}, map[string]bool{}
	for _, op := range ops {
		r, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(op.body)))
		if err != nil {
			l.refuse("operation: %v", err)
			continue
		}
		var pk, rk string
		if r.Method == http.MethodDelete {
			pk, rk = keysOf(r.URL.Path) // no body: nothing but the keys to check
		} else {
			b, _ := io.ReadAll(r.Body)
			pk, rk = l.checkEntity(r.URL.Path, b)
		}
		pks[pk] = true
		if rows[rk] {
			l.refuse("transaction names row %q twice", rk)
		}
		rows[rk] = true
	}
	if len(pks) > 1 {
		l.refuse("transaction spans %d partitions", len(pks))
	}
}

// keysOf is the PartitionKey and RowKey an entity's path names, or "" when it names none.
func keysOf(path string) (pk, rk string) {
	if m := keysInPath.FindStringSubmatch(path); m != nil {
		pk, _ = url.PathUnescape(strings.ReplaceAll(m[1], "''", "'"))
		rk, _ = url.PathUnescape(strings.ReplaceAll(m[2], "''", "'"))
	} else if unescaped, err := url.PathUnescape(path); err == nil {
		if m := keysInPath.FindStringSubmatch(unescaped); m != nil {
			pk, rk = strings.ReplaceAll(m[1], "''", "'"), strings.ReplaceAll(m[2], "''", "'")
		}
	}
	return pk, rk
}

// checkEntity applies Azure's entity limits to one insert, update or merge and returns its keys.
func (l *azureLimits) checkEntity(path string, body []byte) (pk, rk string) {
	var e map[string]any
	if err := json.Unmarshal(body, &e); err != nil {
		l.refuse("entity body: %v", err)
		return "", ""
	}
	pk, rk = keysOf(path)
	if v, ok := e["PartitionKey"].(string); ok {
		pk = v
	}
	if v, ok := e["RowKey"].(string); ok {
		rk = v
	}
	u16 := func(s string) int { return 2 * len(utf16.Encode([]rune(s))) }
	size, props := 4+u16(pk)+u16(rk), 0
	for name, v := range e {
		if name == "PartitionKey" || name == "RowKey" || name == "Timestamp" || strings.Contains(name, "@odata.") {
			continue
		}
		props++
		typ, _ := e[name+"@odata.type"].(string)
		n := 8
		switch v := v.(type) {
		case string:
			switch typ {
			case "Edm.Binary":
				b, err := base64.StdEncoding.DecodeString(v)
				if err != nil {
					l.refuse("%s/%s: property %s is not base64", pk, rk, name)
				}
				if len(b) > 64<<10 {
					l.refuse("%s/%s: property %s of %d bytes: PropertyValueTooLarge", pk, rk, name, len(b))
				}
				n = len(b) + 4
			case "Edm.DateTime", "Edm.Int64", "Edm.Double":
				n = 8
			case "Edm.Guid":
				n = 16
			default:
				if u16(v) > 64<<10 {
					l.refuse("%s/%s: property %s of %d UTF-16 bytes: PropertyValueTooLarge", pk, rk, name, u16(v))
				}
				n = u16(v) + 4
			}
		case bool:
			n = 1
		case float64:
			n = 4 // an unannotated integral number is an Edm.Int32
		}
		size += 8 + u16(name) + n
	}
	if props > 252 {
		l.refuse("%s/%s: %d properties, over 252", pk, rk, props)
	}
	if size > 1<<20 {
		l.refuse("%s/%s: %d bytes: EntityTooLarge", pk, rk, size)
	}
	return pk, rk
}

type part struct {
	ct   string
	body []byte
}

func parts(contentType string, body []byte) ([]part, error) {
	_, params, err := mime.ParseMediaType(contentType)
	if err != nil {
		return nil, err
	}
	r := multipart.NewReader(bytes.NewReader(body), params["boundary"])
	var out []part
	for {
		p, err := r.NextPart()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		b, err := io.ReadAll(p)
		if err != nil {
			return nil, err
		}
		out = append(out, part{p.Header.Get("Content-Type"), b})
	}
}
