// Command otlpsink is the tests' OTLP receiver: the OpenTelemetry
// Collector's own OTLP receiver (go.opentelemetry.io/collector/receiver/
// otlpreceiver, HTTP protocol) behind a consumer that writes every batch of
// traces it accepts to stdout as one line of OTLP/JSON, exactly as the
// collector decoded it. It listens on -listen (a loopback host:port) until
// it is interrupted or its stdin closes, and prints "listening on ADDR" on
// stderr once it accepts requests. With -require-header "Name: value" it
// accepts only requests carrying that header with that value (the
// receiver passes request headers on as client metadata); it refuses the
// others with a permanent error (HTTP 400) and says so on stderr, without
// the value.
//
// It is built by the test harness (internal/regtest) like the registry,
// from this module's go.mod (tools/otlpsink), never by stella's own build.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"

	"go.opentelemetry.io/collector/client"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/config/configgrpc"
	"go.opentelemetry.io/collector/config/configoptional"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/consumer/consumererror"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/receiver/otlpreceiver"
	"go.opentelemetry.io/collector/receiver/receivertest"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:4318", "host:port of the OTLP/HTTP endpoint (loopback only)")
	require := flag.String("require-header", "", `"Name: value": accept only requests with this header`)
	flag.Parse()
	if err := run(*listen, *require); err != nil {
		fmt.Fprintf(os.Stderr, "otlpsink: %v\n", err)
		os.Exit(1)
	}
}

func run(listen, require string) error {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return err
	}
	reqName, reqValue, _ := strings.Cut(require, ":")
	reqName, reqValue = strings.TrimSpace(reqName), strings.TrimSpace(reqValue)
	if require != "" && (reqName == "" || reqValue == "") {
		return fmt.Errorf("-require-header: expected \"Name: value\"")
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("-listen %s: a loopback address only", listen)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	out := bufio.NewWriter(os.Stdout)
	var mu sync.Mutex
	var marshal ptrace.JSONMarshaler
	sink, err := consumer.NewTraces(func(ctx context.Context, td ptrace.Traces) error {
		if reqName != "" {
			if got := client.FromContext(ctx).Metadata.Get(reqName); len(got) != 1 || got[0] != reqValue {
				fmt.Fprintf(os.Stderr, "refused a batch: %d %s header(s), none with the value required\n", len(got), reqName)
				return consumererror.NewPermanent(fmt.Errorf("no %s header with the value required", reqName))
			}
		}
		b, err := marshal.MarshalTraces(td)
		if err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		out.Write(b)
		out.WriteByte('\n')
		return out.Flush()
	})
	if err != nil {
		return err
	}

	f := otlpreceiver.NewFactory()
	cfg := f.CreateDefaultConfig().(*otlpreceiver.Config)
	cfg.Protocols.GRPC = configoptional.None[configgrpc.ServerConfig]()
	http := cfg.Protocols.HTTP.GetOrInsertDefault()
	http.ServerConfig.NetAddr.Endpoint = listen
	http.ServerConfig.IncludeMetadata = reqName != ""
	set := receivertest.NewNopSettings(f.Type())
	r, err := f.CreateTraces(ctx, set, cfg, sink)
	if err != nil {
		return err
	}
	if err := r.Start(ctx, componenttest.NewNopHost()); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "listening on %s\n", listen)
	go func() { // the harness closes stdin to stop it
		_, _ = io.Copy(io.Discard, os.Stdin)
		stop()
	}()
	<-ctx.Done()
	return r.Shutdown(context.Background())
}
