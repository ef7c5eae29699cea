package entrafake

import (
	"encoding/base64"
	"encoding/json"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
)

// userDelta is the change journal behind GET /v1.0/users/delta, kept under Graph.mu. Every change to a user (created,
// updated, deleted) takes the next version; a delta round from a link made at version v answers the users changed
// since v, as Graph's delta query does (https://learn.microsoft.com/graph/delta-query-overview).
type userDelta struct {
	version int
	changes map[string]int        // a user's last change, by id
	tombs   map[string]userRemove // deleted users, by id
	epoch   int                   // ExpireDeltaLinks: links of an earlier epoch are answered 410
}

type userRemove struct {
	version int
	reason  string // "changed" (restorable) or "deleted" (for good)
}

func (d *userDelta) changed(id string) {
	if d.changes == nil {
		d.changes, d.tombs = map[string]int{}, map[string]userRemove{}
	}
	d.version++
	d.changes[id] = d.version
	delete(d.tombs, id)
}

func (d *userDelta) removed(id, reason string) {
	d.changed(id)
	delete(d.changes, id)
	d.tombs[id] = userRemove{version: d.version, reason: reason}
}

// deltaState is what the fake's $skiptoken and $deltatoken carry (opaque to clients, as Graph's are): the round's
// lower bound (Since, -1 for a full enumeration) and upper bound (At, the version when the round began), the offset
// of the page, and the round's $select.
type deltaState struct {
	Epoch  int      `json:"e"`
	Since  int      `json:"s"`
	At     int      `json:"a"`
	Offset int      `json:"o"`
	Select []string `json:"sel,omitempty"`
}

func (s deltaState) encode() string {
	raw, _ := json.Marshal(s)
	return base64.RawURLEncoding.EncodeToString(raw)
}

func decodeDeltaState(tok string) (deltaState, bool) {
	raw, err := base64.RawURLEncoding.DecodeString(tok)
	var s deltaState
	if err != nil || json.Unmarshal(raw, &s) != nil {
		return deltaState{}, false
	}
	return s, true
}

// defaultDeltaPageSize is how many users a delta page holds without SetPageSize and without Prefer:
// odata.maxpagesize.
const defaultDeltaPageSize = 100

// ExpireDeltaLinks makes every next and delta link the users delta answered so far unknown, as Graph forgets a
// delta state it has kept too long: they are answered 410 Gone (resyncRequired) and the client must enumerate again.
func (g *Graph) ExpireDeltaLinks() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.delta.epoch++
}

// usersDelta answers GET /v1.0/users/delta. The first request (no token) may carry $select and enumerates every user;
// a $skiptoken (next link) or $deltatoken (delta link) request carries nothing else, as Graph encodes the round's
// $select in its links. Each page holds at most the page size (SetPageSize, else Prefer: odata.maxpagesize, else
// defaultDeltaPageSize) entries and ends with an @odata.nextLink, the last one with an @odata.deltaLink instead. An
// entry of a user that is there has the selected properties (all of a user's current values, not only the changed
// ones, as Graph answers without Prefer: return=minimal); one of a deleted user has only its id and @removed.
func (g *Graph) usersDelta(w http.ResponseWriter, r *http.Request, pageSize int) {
	q := r.URL.Query()
	for k, v := range q {
		if len(v) != 1 {
			graphError(w, http.StatusBadRequest, "Request_BadRequest", "Query option '"+k+"' was specified more than once.")
			return
		}
	}
	g.mu.Lock()
	epoch, version := g.delta.epoch, g.delta.version
	g.mu.Unlock()
	var st deltaState
	switch tok := q.Get("$skiptoken") + q.Get("$deltatoken"); {
	case q.Has("$skiptoken") || q.Has("$deltatoken"):
		if len(q) != 1 {
			graphError(w, http.StatusBadRequest, "Request_BadRequest", "entrafake: a delta link request carries its token only.")
			return
		}
		var ok bool
		if st, ok = decodeDeltaState(tok); !ok {
			graphError(w, http.StatusBadRequest, "Request_BadRequest", "Invalid delta token.")
			return
		}
		if st.Epoch != epoch {
			graphError(w, http.StatusGone, "resyncRequired", "Resync required. Replace any local cached data with data "+
				"from the server by making a delta request without a token.")
			return
		}
		if q.Has("$deltatoken") {
			// A new round: the changes since the round the link ended.
			st = deltaState{Epoch: epoch, Since: st.At, At: version, Select: st.Select}
		}
	default:
		sel, ok := selected(w, r, "user", userProps)
		if !ok {
			return
		}
		st = deltaState{Epoch: epoch, Since: -1, At: version, Select: sel}
	}
	if p := preferredPageSize(r); pageSize <= 0 {
		pageSize = p
	}

	g.mu.Lock()
	type entry struct {
		id   string
		body map[string]any
	}
	var all []entry
	for _, id := range slices.Sorted(maps.Keys(g.users)) {
		v := g.delta.changes[id]
		if st.Since >= 0 && (v <= st.Since || v > st.At) {
			continue
		}
		props := st.Select
		if props == nil {
			props = userDefaults
		}
		all = append(all, entry{id, project(g.userJSON(g.users[id]), props)})
	}
	if st.Since >= 0 {
		for _, id := range slices.Sorted(maps.Keys(g.delta.tombs)) {
			t := g.delta.tombs[id]
			if t.version > st.Since && t.version <= st.At {
				all = append(all, entry{id, map[string]any{"id": id, "@removed": map[string]any{"reason": t.reason}}})
			}
		}
	}
	g.mu.Unlock()

	start, end := min(st.Offset, len(all)), len(all)
	if start+pageSize < end {
		end = start + pageSize
	}
	value := []map[string]any{}
	for _, e := range all[start:end] {
		value = append(value, e.body)
	}
	body := map[string]any{"@odata.context": g.srv.URL + "/v1.0/$metadata#users" + selContext(st.Select), "value": value}
	link := "http://" + r.Host + "/v1.0/users/delta?"
	if end < len(all) {
		next := st
		next.Offset = end
		body["@odata.nextLink"] = link + "$skiptoken=" + next.encode()
	} else {
		body["@odata.deltaLink"] = link + "$deltatoken=" + deltaState{Epoch: st.Epoch, At: st.At, Select: st.Select}.encode()
	}
	writeJSON(w, http.StatusOK, body)
}

// preferredPageSize reads Prefer: odata.maxpagesize=N (defaultDeltaPageSize without it).
func preferredPageSize(r *http.Request) int {
	for _, p := range strings.Split(r.Header.Get("Prefer"), ",") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(p), "odata.maxpagesize="); ok {
			if n, err := strconv.Atoi(v); err == nil && n > 0 {
				return n
			}
		}
	}
	return defaultDeltaPageSize
}
