package intune_test

import (
	"reflect"
	"strings"
	"testing"

	"github.com/azscep/azscep/internal/intune"
	"github.com/azscep/azscep/internal/intune/intunefake"
)

// TestDownloadDropsOnlyUnreadableItems: a download whose items are partly unreadable (a member of the wrong type, an
// element that is not an object, no requestContext) yields the readable ones in order. The call's log says how many
// were dropped and why, by position, never their content.
func TestDownloadDropsOnlyUnreadableItems(t *testing.T) {
	t.Parallel()
	e := newEnv(t, intunefake.Options{}, nil)
	e.fake.InjectFault(intunefake.RouteDownload, intunefake.Fault{Status: 200, Body: `{"value":[
		{"requestContext":"r1","serialNumber":"01","caConfiguration":"CN=CA"},
		{"requestContext":"secret-context","serialNumber":"0BADC0DE","caConfiguration":{"x":1}},
		{"requestContext":"r2","serialNumber":"02"},
		42,
		{"serialNumber":"03"},
		{"requestContext":"r3","serialNumber":"03","issuerName":null}]}`})
	got, err := e.client.DownloadRevocationRequests(t.Context(), 10)
	if err != nil {
		t.Fatalf("Download: %v", err)
	}
	want := []intune.RevocationRequest{
		{RequestContext: "r1", SerialNumber: "01", CAConfiguration: "CN=CA"},
		{RequestContext: "r2", SerialNumber: "02"},
		{RequestContext: "r3", SerialNumber: "03"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("items = %+v\nwant %+v", got, want)
	}
	recs := e.logs.Records("intune revocation download: dropped items that cannot be acted on")
	if len(recs) != 1 || recs[0]["dropped"] != float64(3) || !strings.Contains(recs[0]["first"].(string), "value[1]: caConfiguration") {
		t.Errorf("dropped-items log lines = %v, want one saying 3, the first value[1]'s caConfiguration", recs)
	}
	if logs := e.logs.String(); strings.Contains(logs, "secret-context") || strings.Contains(logs, "0BADC0DE") {
		t.Errorf("logs carry a dropped item's content: %s", logs)
	}
}
