// Command otlpsink is the tests' OTLP receiver: the OpenTelemetry
// Collector's own OTLP receiver (go.opentelemetry.io/collector/receiver/
// otlpreceiver, HTTP protocol) behind a consumer that writes every batch of
// traces it accepts to stdout as one line of OTLP/JSON, exactly as the
// collector decoded it. It listens on -listen (a loopback host:port) until
// it is interrupted or its stdin closes, and prints "listening on ADDR" on
// stderr once it accepts requests.
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
	"sync"
	"syscall"

	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/config/configgrpc"
	"go.opentelemetry.io/collector/config/configoptional"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/receiver/otlpreceiver"
	"go.opentelemetry.io/collector/receiver/receivertest"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:4318", "host:port of the OTLP/HTTP endpoint (loopback only)")
	flag.Parse()
	if err := run(*listen); err != nil {
		fmt.Fprintf(os.Stderr, "otlpsink: %v\n", err)
		os.Exit(1)
	}
}

func run(listen string) error {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return err
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("-listen %s: a loopback address only", listen)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	out := bufio.NewWriter(os.Stdout)
	var mu sync.Mutex
	var marshal ptrace.JSONMarshaler
	sink, err := consumer.NewTraces(func(_ context.Context, td ptrace.Traces) error {
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
