package tables

import (
	"context"
	"sync"

	"github.com/Azure/azure-sdk-for-go/sdk/data/aztables"
)

// Group commit. Every write to the certs table (a record's insert, its ETag-conditioned replace, a record and its
// idempotency binding) is a group of operations that must commit together. Groups queued while a transaction is
// on the wire go out together in the next entity-group transaction, so that a busy instance pays one round trip
// for the writes of several enrollments instead of one each; an idle instance sends each group at once, alone.
// Each caller still returns only when its own operations have committed (or failed), so the durability rules
// do not change: a pending record is committed before its signature, the issued record before the answer.
//
// A transaction is atomic: when one operation fails, nothing in it commits and the service names the failing
// operation. Its group gets that failure; the other groups go out again without it.

// Limits of one entity-group transaction (Table Storage: at most 100 operations and a 4 MiB payload; the
// payload limit here leaves room for the multipart framing).
const (
	maxBatchOps   = 100
	maxBatchBytes = 2 << 20
)

// commitGroup is one caller's operations.
type commitGroup struct {
	op      string // for error messages
	actions []aztables.TransactionAction
	rows    []string // each action's RowKey: an entity may appear once per transaction
	bytes   int
	done    chan struct{}
	res     []opResult // every action's result, or the failed action's alone
	err     error
}

// committer is the group-commit queue of one partition of one table. At most one transaction is in flight per
// committer: the queue fills while it is, and the next transaction takes what has queued up.
type committer struct {
	s     *Store
	table *aztables.Client
	mu    sync.Mutex
	queue []*commitGroup
	busy  bool
}

// commit queues actions as one group and waits for their outcome: the results of every action on success, the
// failed action's result alone when the group was refused (the caller interprets it, as for a lone
// transaction), or an error when the transaction as a whole failed (mapped like any other call's). A caller
// whose context ends while its group is still queued withdraws it; once the group is on the wire the caller
// waits for the answer (bounded by the call timeout), because its writes may commit.
func (c *committer) commit(ctx context.Context, op string, actions []aztables.TransactionAction, rows []string) ([]opResult, error) {
	g := &commitGroup{op: op, actions: actions, rows: rows, done: make(chan struct{})}
	for _, a := range actions {
		g.bytes += len(a.Entity)
	}
	c.mu.Lock()
	c.queue = append(c.queue, g)
	if !c.busy {
		c.busy = true
		go c.run()
	}
	c.mu.Unlock()
	select {
	case <-g.done:
		return g.res, g.err
	case <-ctx.Done():
	}
	c.mu.Lock()
	for i, q := range c.queue {
		if q == g {
			c.queue = append(c.queue[:i:i], c.queue[i+1:]...)
			c.mu.Unlock()
			return nil, mapErr(op, ctx.Err())
		}
	}
	c.mu.Unlock()
	<-g.done
	return g.res, g.err
}

// run sends transactions until the queue is empty.
func (c *committer) run() {
	for {
		c.mu.Lock()
		batch := c.take()
		if len(batch) == 0 {
			c.busy = false
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()
		c.send(batch)
	}
}

// take removes from the queue, in order, the groups that fit in one transaction: within the limits, and no
// entity twice. A group that does not fit waits for the next transaction, ahead of later groups that did not
// fit either. Called with c.mu held.
func (c *committer) take() []*commitGroup {
	var batch, rest []*commitGroup
	ops, size := 0, 0
	seen := map[string]bool{}
	for _, g := range c.queue {
		fits := len(batch) == 0 || ops+len(g.actions) <= maxBatchOps && size+g.bytes <= maxBatchBytes
		for _, rk := range g.rows {
			fits = fits && !seen[rk]
		}
		if !fits {
			rest = append(rest, g)
			continue
		}
		for _, rk := range g.rows {
			seen[rk] = true
		}
		batch = append(batch, g)
		ops += len(g.actions)
		size += g.bytes
	}
	c.queue = rest
	return batch
}

// send commits batch, sending it again without a group the service refused, until every group has its answer.
func (c *committer) send(batch []*commitGroup) {
	for len(batch) > 0 {
		var actions []aztables.TransactionAction
		for _, g := range batch {
			actions = append(actions, g.actions...)
		}
		ctx, cancel := c.s.callCtx(context.Background())
		res, err := c.s.transact(ctx, c.table, actions)
		cancel()
		if err != nil {
			for _, g := range batch {
				g.err = mapErr(g.op, err)
				close(g.done)
			}
			return
		}
		if len(res) == len(actions) && committed(res) {
			off := 0
			for _, g := range batch {
				g.res = res[off : off+len(g.actions)]
				off += len(g.actions)
				close(g.done)
			}
			return
		}
		failed := res[len(res)-1]
		at := failedGroup(batch, failed)
		if at < 0 {
			// The answer does not say which operation failed: let every group find out on its own.
			if len(batch) == 1 {
				batch[0].res = []opResult{failed}
				close(batch[0].done)
				return
			}
			for _, g := range batch {
				c.send([]*commitGroup{g})
			}
			return
		}
		batch[at].res = []opResult{failed}
		close(batch[at].done)
		batch = append(batch[:at:at], batch[at+1:]...)
	}
}

func committed(res []opResult) bool {
	for _, r := range res {
		if r.status >= 300 {
			return false
		}
	}
	return true
}

// failedGroup is the index of the group that holds the failed operation, or -1 when the answer does not say.
func failedGroup(batch []*commitGroup, failed opResult) int {
	if failed.index < 0 {
		return -1
	}
	off := 0
	for i, g := range batch {
		if failed.index < off+len(g.actions) {
			return i
		}
		off += len(g.actions)
	}
	return -1
}
