package entra_test

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/azscep/azscep/internal/entra"
	"github.com/azscep/azscep/internal/entra/entrafake"
)

// TestDeviceLookupBudget: the device questions a user sends to Graph are budgeted per user. Over the budget the
// answer is a *LookupBudgetError naming the wait, with no Graph call and not ErrUnavailable; cached answers cost
// nothing and are still given; another user has a budget of their own. A Graph failure spends a lookup (it cost a
// call) but is never cached as an answer: once the budget refills, the same question goes to Graph again.
func TestDeviceLookupBudget(t *testing.T) {
	const burst, every = 3, time.Minute
	e := newGraphEnv(t, func(c *entra.GraphConfig) { c.DeviceLookupBurst, c.DeviceLookupInterval = burst, every })
	ctx := context.Background()
	user, other := entrafake.NewGUID(), entrafake.NewGUID()

	var asked []string
	for range burst {
		dev := entrafake.NewGUID()
		asked = append(asked, dev)
		if v, err := e.d.Verdict(ctx, user, dev); v != entra.DeviceNotOwned || err != nil {
			t.Fatalf("Verdict(unknown device) = (%v, %v), want not owned", v, err)
		}
	}
	if n := len(e.g.Requests()); n != 2*burst {
		t.Fatalf("Graph calls = %d, want %d", n, 2*burst)
	}
	_, err := e.d.VerdictManaged(ctx, user, entrafake.NewGUID())
	var budget *entra.LookupBudgetError
	if !errors.As(err, &budget) || budget.RetryAfter <= 0 || budget.RetryAfter > every {
		t.Fatalf("question over budget: err = %v, want *LookupBudgetError with RetryAfter in (0, %s]", err, every)
	}
	if errors.Is(err, entra.ErrUnavailable) {
		t.Fatalf("over budget is not Graph being unavailable: %v", err)
	}
	if v, err := e.d.Verdict(ctx, user, asked[0]); v != entra.DeviceNotOwned || err != nil {
		t.Fatalf("cached question over budget = (%v, %v), want the cached answer", v, err)
	}
	if n := len(e.g.Requests()); n != 2*burst {
		t.Fatalf("Graph calls = %d after questions over budget, want still %d", n, 2*burst)
	}
	if _, err := e.d.Verdict(ctx, other, entrafake.NewGUID()); err != nil {
		t.Fatalf("another user's question: %v", err)
	}

	// Refilled by one: a failing Graph spends it, and the question stays unanswered rather than cached.
	e.clock.Advance(every)
	dev := entrafake.NewGUID()
	e.g.AddDevice(dev, user)
	e.g.SetFault(entrafake.Fault{Status: http.StatusInternalServerError})
	if ok, err := e.d.OwnsDevice(ctx, user, dev); ok || !errors.Is(err, entra.ErrUnavailable) {
		t.Fatalf("OwnsDevice with Graph failing = (%v, %v), want ErrUnavailable", ok, err)
	}
	e.g.SetFault(entrafake.Fault{})
	if _, err := e.d.OwnsDevice(ctx, user, dev); !errors.As(err, &budget) {
		t.Fatalf("OwnsDevice right after a failure = %v, want *LookupBudgetError", err)
	}
	e.clock.Advance(every)
	n := len(e.g.Requests())
	if !e.owns(t, user, dev) {
		t.Fatal("owned device not owned once Graph answers")
	}
	if got := len(e.g.Requests()) - n; got != 3 {
		t.Fatalf("Graph calls for the question that failed before = %d, want 3 (owners, state, managed device)", got)
	}
}
