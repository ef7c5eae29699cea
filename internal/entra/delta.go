package entra

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
)

// UsersDeltaFirst is the first request of a users delta round that enumerates the tenant: every user with its object
// ID and accountEnabled. Graph keeps the $select in the links it answers, so later requests are the links as given.
const UsersDeltaFirst = "v1.0/users/delta?$select=id,accountEnabled"

// DevicesDeltaFirst is UsersDeltaFirst for the tenant's Entra devices, with their deviceId: the ID a self-service
// device certificate names (a device's object ID is another GUID).
const DevicesDeltaFirst = "v1.0/devices/delta?$select=id,deviceId,accountEnabled"

// deltaPageSize is the page size asked of Graph (Prefer: odata.maxpagesize), its largest for directory objects: a
// tenant's first enumeration then takes a few pages per thousand objects rather than dozens.
const deltaPageSize = 999

// ErrDeltaExpired reports a delta or next link Graph no longer knows (410 Gone: syncStateNotFound, resyncRequired):
// the round must start again with a full enumeration.
var ErrDeltaExpired = errors.New("entra: Graph no longer knows the delta link; enumerate again")

// DirectoryChange is one entry of a users or devices delta page.
type DirectoryChange struct {
	// ID is the object ID, lower case.
	ID string
	// DeviceID is a device's deviceId, lower case, when the entry carries it (never for a deleted device: Graph
	// sends only the object ID and @removed); "" for users.
	DeviceID string
	// Removed is the entry's @removed reason: "changed" (deleted, restorable from deleted items for 30 days) or
	// "deleted" (deleted for good); "" for an object that is there.
	Removed string
	// Enabled is accountEnabled when the entry carries it, nil when it does not.
	Enabled *bool
}

// Gone reports whether the entry says the account or device can no longer sign in: disabled, or deleted (restorable
// or not).
func (c DirectoryChange) Gone() bool {
	return c.Removed != "" || c.Enabled != nil && !*c.Enabled
}

// DeltaPage is one page of a delta round.
type DeltaPage struct {
	Changes []DirectoryChange
	// Exactly one of Next and Delta is set: Next is the @odata.nextLink (more pages of this round), Delta the
	// @odata.deltaLink (the round is complete; the next round, later, starts there).
	Next, Delta string
}

// UsersDelta reads one page of Graph's users delta query (GET /v1.0/users/delta): the first page of a full
// enumeration when link is "", else the page at link, a next or delta link an earlier page gave. It needs
// User.Read.All.
//
// The page is checked whole before anything of it is returned, so that a caller acts on all of a page or on none of
// it: an entry without a GUID id, an accountEnabled that is not a boolean, an @removed reason Graph does not
// document, or a page with no link or both links is ErrUnavailable, as is every Graph failure (transport,
// 401/403, 429, 5xx, a body that is not JSON, a link outside Graph's origin). A 410 is ErrDeltaExpired.
func (d *Directory) UsersDelta(ctx context.Context, link string) (*DeltaPage, error) {
	return d.delta(ctx, link, UsersDeltaFirst, "users", false)
}

// DevicesDelta is UsersDelta for the tenant's Entra devices (GET /v1.0/devices/delta), with Device.Read.All; a
// deviceId that is not a GUID is a malformed page too.
func (d *Directory) DevicesDelta(ctx context.Context, link string) (*DeltaPage, error) {
	return d.delta(ctx, link, DevicesDeltaFirst, "devices", true)
}

func (d *Directory) delta(ctx context.Context, link, first, what string, devices bool) (*DeltaPage, error) {
	if link == "" {
		link = d.graphURL(first)
	}
	if err := d.sameOrigin(link); err != nil {
		return nil, err
	}
	var resp struct {
		Value []struct {
			ID             any `json:"id"`
			DeviceID       any `json:"deviceId"`
			AccountEnabled any `json:"accountEnabled"`
			Removed        *struct {
				Reason string `json:"reason"`
			} `json:"@removed"`
		} `json:"value"`
		NextLink  string `json:"@odata.nextLink"`
		DeltaLink string `json:"@odata.deltaLink"`
	}
	hdr := http.Header{"Prefer": {"odata.maxpagesize=" + strconv.Itoa(deltaPageSize)}}
	found, err := d.getJSONWith(ctx, link, hdr, &resp)
	var st graphStatus
	switch {
	case errors.As(err, &st) && st == http.StatusGone:
		return nil, fmt.Errorf("%w: %w", ErrDeltaExpired, err)
	case err != nil:
		return nil, fmt.Errorf("reading the %s delta: %w", what, err)
	case !found:
		return nil, fmt.Errorf("%w: Graph %s delta page not found", ErrUnavailable, what)
	case (resp.NextLink == "") == (resp.DeltaLink == ""):
		return nil, fmt.Errorf("%w: Graph %s delta page has %s", ErrUnavailable, what,
			map[bool]string{true: "neither a next nor a delta link", false: "both a next and a delta link"}[resp.NextLink == ""])
	}
	page := &DeltaPage{Next: resp.NextLink, Delta: resp.DeltaLink}
	for _, l := range []string{page.Next, page.Delta} {
		if l == "" {
			continue
		}
		if err := d.sameOrigin(l); err != nil {
			return nil, err
		}
	}
	for i, v := range resp.Value {
		id, ok := v.ID.(string)
		if !ok || !isGUID(id) {
			return nil, fmt.Errorf("%w: Graph %s delta entry %d has no object ID", ErrUnavailable, what, i)
		}
		c := DirectoryChange{ID: normGUID(id)}
		switch e := v.AccountEnabled.(type) {
		case nil:
			// Not sent (an entry of a deleted object, or Prefer: return=minimal): it says nothing about the account.
		case bool:
			c.Enabled = &e
		default:
			return nil, fmt.Errorf("%w: Graph %s delta entry %s has accountEnabled %v", ErrUnavailable, what, c.ID, e)
		}
		switch dev := v.DeviceID.(type) {
		case nil:
		case string:
			if !devices || !isGUID(dev) {
				return nil, fmt.Errorf("%w: Graph %s delta entry %s has deviceId %q", ErrUnavailable, what, c.ID, dev)
			}
			c.DeviceID = normGUID(dev)
		default:
			return nil, fmt.Errorf("%w: Graph %s delta entry %s has deviceId %v", ErrUnavailable, what, c.ID, dev)
		}
		if v.Removed != nil {
			if v.Removed.Reason != "changed" && v.Removed.Reason != "deleted" {
				return nil, fmt.Errorf("%w: Graph %s delta entry %s has @removed reason %q", ErrUnavailable, what, c.ID,
					v.Removed.Reason)
			}
			c.Removed = v.Removed.Reason
		}
		page.Changes = append(page.Changes, c)
	}
	return page, nil
}

// UserExists reports whether the user with the given object ID is in the directory now: GET
// /v1.0/users/{id}?$select=id,accountEnabled (User.Read.All). It answers what a delta enumeration from scratch cannot
// say, which lists only the objects there: a user deleted before it (restorable from deleted items or not) is false.
// Only Graph's own 404 (Request_ResourceNotFound) is false; every other failure, or an answer for another ID, is an
// error wrapping ErrUnavailable, since a false revokes. Answers are not cached.
func (d *Directory) UserExists(ctx context.Context, userObjectID string) (bool, error) {
	return d.objectExists(ctx, "users", "user", userObjectID)
}

// DeviceObjectExists is UserExists for the Entra device with the given directory object ID (not its deviceId): GET
// /v1.0/devices/{id}?$select=id,accountEnabled (Device.Read.All).
func (d *Directory) DeviceObjectExists(ctx context.Context, objectID string) (bool, error) {
	return d.objectExists(ctx, "devices", "device", objectID)
}

func (d *Directory) objectExists(ctx context.Context, set, what, id string) (bool, error) {
	if !isGUID(id) {
		return false, fmt.Errorf("%w: %s object ID", ErrInvalidID, what)
	}
	id = normGUID(id)
	var obj struct {
		ID string `json:"id"`
	}
	found, err := d.getObject(ctx, d.graphURL("v1.0/"+set+"/"+id+"?$select=id,accountEnabled"), &obj)
	switch {
	case err != nil:
		return false, fmt.Errorf("looking up %s %s: %w", what, id, err)
	case !found:
		return false, nil
	case normGUID(obj.ID) != id:
		return false, fmt.Errorf("%w: Graph answered %s %q for %s", ErrUnavailable, what, obj.ID, id)
	}
	return true, nil
}
