package regtest

import (
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/olareg/olareg"
	"github.com/olareg/olareg/config"
)

// StartReferrers runs an in-process registry with the native OCI 1.1 referrers API
// (olareg, memory storage, deletes enabled) behind httptest on 127.0.0.1, over plain
// HTTP and without auth. t.Cleanup closes it.
func StartReferrers(t testing.TB) *Registry {
	t.Helper()
	enabled := true
	handler := olareg.New(config.Config{
		Storage: config.ConfigStorage{StoreType: config.StoreMem},
		API: config.ConfigAPI{
			DeleteEnabled: &enabled,
			Blob:          config.ConfigAPIBlob{DeleteEnabled: &enabled},
		},
	})
	srv := httptest.NewServer(handler)
	t.Cleanup(func() {
		srv.Close()
		_ = handler.Close()
	})
	return &Registry{
		Host:      strings.TrimPrefix(srv.URL, "http://"),
		URL:       srv.URL,
		PlainHTTP: true,
	}
}
