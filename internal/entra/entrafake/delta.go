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

// deltaJournal is the change journal behind GET /v1.0/users/delta or /v1.0/devices/delta, kept under Graph.mu. Every
// change to an object (created, updated, deleted) takes the next version; a delta round from a link made at version v
// answers the objects changed since v, as Graph's delta query does
// (https://learn.microsoft.com/graph/delta-query-overview).
type deltaJournal struct {
	version int
	changes map[string]int          // an object's last change, by object id
	tombs   map[string]deltaRemoval // deleted objects, by object id
	epoch   int                     // ExpireDeltaLinks: links of an earlier epoch are answered 410
}

type deltaRemoval struct {
	version int
	reason  string // "changed" (restorable) or "deleted" (for good)
}

func (d *deltaJournal) changed(id string) {
	if d.changes == nil {
		d.changes, d.tombs = map[string]int{}, map[string]deltaRemoval{}
	}
	d.version++
	d.changes[id] = d.version
	delete(d.tombs, id)
}

func (d *deltaJournal) removed(id, reason string) {
	d.changed(id)
	delete(d.changes, id)
	d.tombs[id] = deltaRemoval{version: d.version, reason: reason}
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

// ExpireDeltaLinks makes every next and delta link the users and devices delta answered so far unknown, as Graph
// forgets a delta state it has kept too long: they are answered 410 Gone (resyncRequired) and the client must
// enumerate again.
func (g *Graph) ExpireDeltaLinks() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.delta.epoch++
	g.devDelta.epoch++
}

// usersDelta answers GET /v1.0/users/delta (deltaList).
func (g *Graph) usersDelta(w http.ResponseWriter, r *http.Request, pageSize int) {
	g.deltaList(w, r, pageSize, "users", "user", userProps, userDefaults, &g.delta, func() map[string]map[string]any {
		all := map[string]map[string]any{}
		for id, u := range g.users {
			all[id] = g.userJSON(u)
		}
		return all
	})
}

// devicesDelta answers GET /v1.0/devices/delta (deltaList); a device's id is its object ID.
func (g *Graph) devicesDelta(w http.ResponseWriter, r *http.Request, pageSize int) {
	g.deltaList(w, r, pageSize, "devices", "device", deviceProps, deviceProps, &g.devDelta, func() map[string]map[string]any {
		all := map[string]map[string]any{}
		for _, d := range g.devices {
			all[d.objectID] = map[string]any{"id": d.objectID, "deviceId": d.deviceID, "accountEnabled": d.accountEnabled}
		}
		return all
	})
}

// deltaList answers a delta query of the entity set set (type typ, modelled properties props, defaults without
// $select), from journal, over the objects objects lists (called under g.mu, by object id). The first request (no
// token) may carry $select and enumerates every object; a $skiptoken (next link) or $deltatoken (delta link) request
// carries nothing else, as Graph encodes the round's $select in its links. Each page holds at most the page size
// (SetPageSize, else Prefer: odata.maxpagesize, else defaultDeltaPageSize) entries and ends with an @odata.nextLink,
// the last one with an @odata.deltaLink instead. An entry of an object that is there has the selected properties (all
// of its current values, not only the changed ones, as Graph answers without Prefer: return=minimal); one of a
// deleted object has only its id and @removed.
func (g *Graph) deltaList(w http.ResponseWriter, r *http.Request, pageSize int, set, typ string, props, defaults []string,
	journal *deltaJournal, objects func() map[string]map[string]any) {
	q := r.URL.Query()
	for k, v := range q {
		if len(v) != 1 {
			graphError(w, http.StatusBadRequest, "Request_BadRequest", "Query option '"+k+"' was specified more than once.")
			return
		}
	}
	g.mu.Lock()
	epoch, version := journal.epoch, journal.version
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
		sel, ok := selected(w, r, typ, props)
		if !ok {
			return
		}
		st = deltaState{Epoch: epoch, Since: -1, At: version, Select: sel}
	}
	if p := preferredPageSize(r); pageSize <= 0 {
		pageSize = p
	}

	g.mu.Lock()
	var all []map[string]any
	present := objects()
	for _, id := range slices.Sorted(maps.Keys(present)) {
		v := journal.changes[id]
		if st.Since >= 0 && (v <= st.Since || v > st.At) {
			continue
		}
		sel := st.Select
		if sel == nil {
			sel = defaults
		}
		all = append(all, project(present[id], sel))
	}
	if st.Since >= 0 {
		for _, id := range slices.Sorted(maps.Keys(journal.tombs)) {
			t := journal.tombs[id]
			if t.version > st.Since && t.version <= st.At {
				all = append(all, map[string]any{"id": id, "@removed": map[string]any{"reason": t.reason}})
			}
		}
	}
	g.mu.Unlock()

	start, end := min(st.Offset, len(all)), len(all)
	if start+pageSize < end {
		end = start + pageSize
	}
	body := map[string]any{"@odata.context": g.srv.URL + "/v1.0/$metadata#" + set + selContext(st.Select),
		"value": append([]map[string]any{}, all[start:end]...)}
	link := "http://" + r.Host + "/v1.0/" + set + "/delta?"
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
