package entra_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/azscep/azscep/internal/entra"
	"github.com/azscep/azscep/internal/entra/entrafake"
)

// deltaRound reads a users delta round from link to its delta link, and returns its changes by user and the
// delta link.
func (e *graphEnv) deltaRound(t *testing.T, link string) (map[string]entra.DirectoryChange, string, int) {
	t.Helper()
	got := map[string]entra.DirectoryChange{}
	for pages := 1; ; pages++ {
		p, err := e.d.UsersDelta(context.Background(), link)
		if err != nil {
			t.Fatalf("UsersDelta(%q): %v", link, err)
		}
		for _, c := range p.Changes {
			got[c.ID] = c
		}
		if p.Delta != "" {
			return got, p.Delta, pages
		}
		link = p.Next
	}
}

// TestUsersDeltaRounds: the first round enumerates every user with accountEnabled, over as many pages as the page
// size makes; a round from its delta link has only what changed since: a disabled user, a restorable deletion
// (@removed changed) and a deletion for good (@removed deleted). Only the properties asked for are read.
func TestUsersDeltaRounds(t *testing.T) {
	e := newGraphEnv(t)
	e.g.SetPageSize(2)
	ids := make([]string, 5)
	for i := range ids {
		ids[i] = entrafake.NewGUID()
		e.g.PutUser(entrafake.User{ID: ids[i], UPN: "u" + ids[i][:4] + "@contoso.example", Enabled: i != 4})
	}
	first, link, pages := e.deltaRound(t, "")
	if len(first) != 5 || pages != 3 {
		t.Fatalf("first round: %d users in %d pages, want 5 in 3", len(first), pages)
	}
	for i, id := range ids {
		if c := first[id]; c.Enabled == nil || *c.Enabled != (i != 4) || c.Removed != "" || c.Gone() != (i == 4) {
			t.Fatalf("first round, user %d: %+v", i, c)
		}
	}
	if q := e.g.Requests()[0]; q.Path != "/v1.0/users/delta" || q.Query != "$select=id,accountEnabled" {
		t.Fatalf("first request %s?%s", q.Path, q.Query)
	}

	e.g.UpdateUser(ids[0], func(u *entrafake.User) { u.Enabled = false })
	e.g.SoftDeleteUser(ids[1])
	e.g.DeleteUser(ids[2])
	next, link2, _ := e.deltaRound(t, link)
	if len(next) != 3 {
		t.Fatalf("second round: %v, want the 3 changed users", next)
	}
	if c := next[ids[0]]; c.Enabled == nil || *c.Enabled || !c.Gone() {
		t.Fatalf("disabled user: %+v", c)
	}
	if c := next[ids[1]]; c.Removed != "changed" || !c.Gone() {
		t.Fatalf("soft-deleted user: %+v", c)
	}
	if c := next[ids[2]]; c.Removed != "deleted" || !c.Gone() {
		t.Fatalf("deleted user: %+v", c)
	}
	if none, _, _ := e.deltaRound(t, link2); len(none) != 0 {
		t.Fatalf("a round with no change: %v", none)
	}
}

// TestUsersDeltaFailures: whatever keeps a page from being read whole is an error, never a page: Graph refusing the
// permission, throttling, a server error, and a link Graph has forgotten (ErrDeltaExpired, the caller enumerates
// again).
func TestUsersDeltaFailures(t *testing.T) {
	e := newGraphEnv(t)
	e.g.PutUser(entrafake.User{ID: entrafake.NewGUID(), UPN: "a@contoso.example", Enabled: false})
	for _, f := range []entrafake.Fault{{Status: http.StatusForbidden}, {Status: http.StatusTooManyRequests, RetryAfter: "120"},
		{Status: http.StatusInternalServerError}} {
		e.g.SetFault(f)
		if p, err := e.d.UsersDelta(context.Background(), ""); !errors.Is(err, entra.ErrUnavailable) || p != nil {
			t.Errorf("Graph %d: page %v, error %v; want ErrUnavailable and no page", f.Status, p, err)
		}
	}
	e.g.SetFault(entrafake.Fault{})
	_, link, _ := e.deltaRound(t, "")
	e.g.ExpireDeltaLinks()
	if _, err := e.d.UsersDelta(context.Background(), link); !errors.Is(err, entra.ErrDeltaExpired) {
		t.Fatalf("expired delta link: %v, want ErrDeltaExpired", err)
	}
}

// TestUsersDeltaMalformedPage: a page with anything the reader cannot take for what Graph documents is refused
// whole, so that no entry of it is acted on; a link to another origin is never followed with the Graph token.
func TestUsersDeltaMalformedPage(t *testing.T) {
	id := entrafake.NewGUID()
	var body string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(strings.ReplaceAll(body, "BASE", "http://"+r.Host)))
	}))
	t.Cleanup(srv.Close)
	d, err := entra.NewDirectory(entra.GraphConfig{Credential: &entrafake.Credential{Token: "t"}, BaseURL: srv.URL,
		HTTPClient: srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	disabled := `{"id":"` + id + `","accountEnabled":false}`
	for name, b := range map[string]string{
		"no link":               `{"value":[` + disabled + `]}`,
		"both links":            `{"value":[` + disabled + `],"@odata.nextLink":"BASE/n","@odata.deltaLink":"BASE/d"}`,
		"id not a GUID":         `{"value":[` + disabled + `,{"id":"x","accountEnabled":false}],"@odata.deltaLink":"BASE/d"}`,
		"no id":                 `{"value":[` + disabled + `,{"accountEnabled":false}],"@odata.deltaLink":"BASE/d"}`,
		"accountEnabled string": `{"value":[` + disabled + `,{"id":"` + entrafake.NewGUID() + `","accountEnabled":"false"}],"@odata.deltaLink":"BASE/d"}`,
		"unknown removal":       `{"value":[` + disabled + `,{"id":"` + entrafake.NewGUID() + `","@removed":{"reason":"gone"}}],"@odata.deltaLink":"BASE/d"}`,
		"value not a list":      `{"value":{},"@odata.deltaLink":"BASE/d"}`,
		"foreign next link":     `{"value":[` + disabled + `],"@odata.nextLink":"https://graph.example.net/v1.0/users/delta"}`,
		"not JSON":              `<html>`,
		"deviceId on a user":    `{"value":[` + disabled + `,{"id":"` + entrafake.NewGUID() + `","deviceId":"` + entrafake.NewGUID() + `"}],"@odata.deltaLink":"BASE/d"}`,
	} {
		body = b
		if p, err := d.UsersDelta(context.Background(), ""); !errors.Is(err, entra.ErrUnavailable) || p != nil {
			t.Errorf("%s: page %v, error %v; want ErrUnavailable and no page", name, p, err)
		}
	}
	body = `{"value":[` + disabled + `],"@odata.deltaLink":"BASE/d"}`
	if p, err := d.UsersDelta(context.Background(), "https://graph.example.net/v1.0/users/delta"); err == nil || p != nil {
		t.Errorf("a stored link to another origin was followed: %v", p)
	}
	if p, err := d.UsersDelta(context.Background(), ""); err != nil || len(p.Changes) != 1 || !p.Changes[0].Gone() {
		t.Fatalf("well-formed page: %+v, %v", p, err)
	}
}

// TestDevicesDeltaRounds: the devices delta enumerates every Entra device with its deviceId (the ID certificates
// name, not the object ID) and accountEnabled; the next round has a disabled device with its deviceId, and a deleted
// one with only its object ID and @removed, as Graph sends it.
func TestDevicesDeltaRounds(t *testing.T) {
	e := newGraphEnv(t)
	kept, lost, gone := entrafake.NewGUID(), entrafake.NewGUID(), entrafake.NewGUID()
	e.g.AddDevice(kept)
	e.g.AddDevice(strings.ToUpper(lost))
	goneObj := e.g.AddDevice(gone)
	var link string
	seen := map[string]bool{}
	for {
		p, err := e.d.DevicesDelta(context.Background(), link)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range p.Changes {
			if c.Enabled == nil || !*c.Enabled || c.Gone() {
				t.Fatalf("enumerated device %+v", c)
			}
			seen[c.DeviceID] = true
		}
		if link = p.Next; p.Delta != "" {
			link = p.Delta
			break
		}
	}
	if len(seen) != 3 || !seen[kept] || !seen[lost] || !seen[gone] {
		t.Fatalf("enumerated device IDs %v", seen)
	}
	if q := e.g.Requests()[0]; q.Path != "/v1.0/devices/delta" || q.Query != "$select=id,deviceId,accountEnabled" {
		t.Fatalf("first request %s?%s", q.Path, q.Query)
	}
	e.g.SetAccountEnabled(lost, false)
	e.g.DeleteDevice(gone)
	p, err := e.d.DevicesDelta(context.Background(), link)
	if err != nil || p.Delta == "" || len(p.Changes) != 2 {
		t.Fatalf("second round: %+v, %v", p, err)
	}
	for _, c := range p.Changes {
		switch {
		case c.DeviceID == lost:
			if !c.Gone() || c.Removed != "" {
				t.Errorf("disabled device %+v", c)
			}
		case c.ID == goneObj:
			if !c.Gone() || c.Removed != "deleted" || c.DeviceID != "" {
				t.Errorf("deleted device %+v", c)
			}
		default:
			t.Errorf("unexpected change %+v", c)
		}
	}
}

// TestObjectExists: UserExists and DeviceObjectExists answer true for an object Graph has and false only for Graph's
// own 404 (Request_ResourceNotFound) of a deleted one; a 404 with another body (a gateway's, a route Graph does not
// serve), an answer for another object, a refusal or a failure is ErrUnavailable, never "deleted"; an ID that is not
// a GUID is not sent.
func TestObjectExists(t *testing.T) {
	e := newGraphEnv(t)
	ctx := context.Background()
	user, gone := entrafake.NewGUID(), entrafake.NewGUID()
	e.g.PutUser(entrafake.User{ID: user, UPN: "alice@contoso.example", Enabled: false})
	e.g.PutUser(entrafake.User{ID: gone, UPN: "bob@contoso.example", Enabled: true})
	e.g.SoftDeleteUser(gone)
	device := entrafake.NewGUID()
	obj := e.g.AddDevice(device)
	if ok, err := e.d.UserExists(ctx, strings.ToUpper(user)); !ok || err != nil {
		t.Errorf("UserExists(disabled user) = %v, %v; want true", ok, err)
	}
	if ok, err := e.d.UserExists(ctx, gone); ok || err != nil {
		t.Errorf("UserExists(deleted user) = %v, %v; want false, nil", ok, err)
	}
	if ok, err := e.d.DeviceObjectExists(ctx, obj); !ok || err != nil {
		t.Errorf("DeviceObjectExists(device) = %v, %v; want true", ok, err)
	}
	e.g.DeleteDevice(device)
	if ok, err := e.d.DeviceObjectExists(ctx, obj); ok || err != nil {
		t.Errorf("DeviceObjectExists(deleted device) = %v, %v; want false, nil", ok, err)
	}
	if _, err := e.d.UserExists(ctx, "x' or 1 eq 1"); !errors.Is(err, entra.ErrInvalidID) {
		t.Errorf("UserExists(not a GUID) error %v, want ErrInvalidID", err)
	}
	for _, status := range []int{http.StatusNotFound, http.StatusForbidden, http.StatusInternalServerError} {
		e.g.SetFault(entrafake.Fault{Status: status, Path: "/v1.0/users/" + gone})
		if ok, err := e.d.UserExists(ctx, gone); ok || !errors.Is(err, entra.ErrUnavailable) {
			t.Errorf("UserExists with Graph %d (not Request_ResourceNotFound) = %v, %v; want ErrUnavailable", status, ok, err)
		}
	}
	e.g.SetFault(entrafake.Fault{})

	other := entrafake.NewGUID()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"id":"` + other + `","accountEnabled":true}`))
	}))
	t.Cleanup(srv.Close)
	d, err := entra.NewDirectory(entra.GraphConfig{Credential: &entrafake.Credential{Token: "t"}, BaseURL: srv.URL,
		HTTPClient: srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := d.UserExists(ctx, user); ok || !errors.Is(err, entra.ErrUnavailable) {
		t.Errorf("UserExists answered for another object = %v, %v; want ErrUnavailable", ok, err)
	}
}
