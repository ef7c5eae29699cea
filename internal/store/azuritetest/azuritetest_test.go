package azuritetest_test

import (
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/azscep/azscep/internal/store/azuritetest"
)

func TestMain(m *testing.M) { azuritetest.Main(m) }

func dialable(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err == nil {
		c.Close()
	}
	return err == nil
}

func TestServerStopStart(t *testing.T) {
	srv := azuritetest.NewServer(t)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(srv.Port()))
	if !dialable(addr) {
		t.Fatal("server not listening after NewServer")
	}
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	if dialable(addr) {
		t.Fatal("server still listening after Stop")
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	if !dialable(addr) {
		t.Fatal("server not listening after Start")
	}
	if !strings.Contains(srv.ConnectionString(), "TableEndpoint=http://"+addr+"/devstoreaccount1") {
		t.Errorf("connection string %q does not name %s", srv.ConnectionString(), addr)
	}
}

func TestProxyStopStart(t *testing.T) {
	p := azuritetest.NewProxy(t)
	if !dialable(p.Addr()) {
		t.Fatal("proxy not listening")
	}
	p.Stop()
	if dialable(p.Addr()) {
		t.Fatal("proxy still listening after Stop")
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	if !dialable(p.Addr()) {
		t.Fatal("proxy not listening after Start")
	}
	if !strings.Contains(p.ConnectionString(), "TableEndpoint=http://"+p.Addr()+"/devstoreaccount1") {
		t.Errorf("connection string %q does not go through the proxy", p.ConnectionString())
	}
}

func TestConnectionStringsAreFresh(t *testing.T) {
	a, b := azuritetest.ConnectionString(t), azuritetest.ConnectionString(t)
	if a == b || !strings.Contains(a, ";TablePrefix=t") {
		t.Errorf("connection strings not fresh: %q %q", a, b)
	}
	got := azuritetest.WithPrefix("A=1;TablePrefix=abc;B=2", "def")
	if got != "A=1;B=2;TablePrefix=abcdef;" {
		t.Errorf("WithPrefix = %q", got)
	}
	seen := map[string]bool{}
	for range 1000 {
		p := azuritetest.FreshPrefix()
		if seen[p] || len(p) != 12 || p[0] != 't' {
			t.Fatalf("bad or repeated prefix %q", p)
		}
		seen[p] = true
	}
}
