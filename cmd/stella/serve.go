package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/urfave/cli/v2"

	"stellaops.io/stella/metrics"
	"stellaops.io/stella/serve"
)

// defaultListen is where `stella serve` listens without --listen.
const defaultListen = "127.0.0.1:9464"

func (s *session) serveCommand() *cli.Command {
	return &cli.Command{
		Name:  "serve",
		Usage: "serve /healthz, the pack_* metrics at /metrics, a read-only run API with live logs (SSE) and the run console, on loopback unless TLS is given",
		Description: "Endpoints: /healthz, /metrics, /api/runs, /api/runs/{id}, /api/runs/{id}/logs and /task-runner/runs/{id}/logs " +
			"(Server-Sent Events when the client accepts text/event-stream, NDJSON otherwise), and the run console at " +
			"/console/packs/runs and /console/packs/runs/{id} (built into the binary; it loads nothing from another host). An address other than loopback " +
			"needs --cert-file and --key-file. Runs until interrupted. See docs/serve.md.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "listen", Value: defaultListen, Usage: "HOST:PORT to listen on (port 0 picks a free port)"},
			&cli.StringFlag{Name: "cert-file", Usage: "TLS certificate (PEM), required to listen beyond loopback"},
			&cli.StringFlag{Name: "key-file", Usage: "TLS private key (PEM) of --cert-file"},
		},
		Action: action(s.serve),
	}
}

// serveResult is what `stella serve` prints once it listens.
type serveResult struct {
	Listen string `json:"listen"`
	URL    string `json:"url"`
	TLS    bool   `json:"tls"`
}

func (s *session) serve(ctx context.Context, c *cli.Context) error {
	addr, certFile, keyFile := c.String("listen"), c.String("cert-file"), c.String("key-file")
	if (certFile == "") != (keyFile == "") {
		return usageError("serve: --cert-file and --key-file go together")
	}
	withTLS := certFile != ""
	if err := serve.CheckListen(addr, withTLS); err != nil {
		return err
	}
	var tlsConfig *tls.Config
	if withTLS {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return &fileError{path: certFile, err: fmt.Errorf("TLS certificate and key %s: %w", keyFile, err)}
		}
		tlsConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	_, rs, err := s.openRuns(ctx)
	if err != nil {
		return err
	}
	defer rs.Close()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("serve: listen %s: %w", addr, err)
	}
	if tlsConfig != nil {
		ln = tls.NewListener(ln, tlsConfig)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	srv := &http.Server{
		Handler:           serve.Handler(serve.Options{Runs: rs, Metrics: metrics.NewRegistry(rs, s.now)}),
		ReadHeaderTimeout: 10 * time.Second,
		// Streams of followed logs end with the command.
		BaseContext: func(net.Listener) context.Context { return ctx },
	}
	scheme := "http"
	if withTLS {
		scheme = "https"
	}
	res := serveResult{Listen: ln.Addr().String(), URL: scheme + "://" + ln.Addr().String(), TLS: withTLS}
	if err := s.emit(res, func(w io.Writer) { fmt.Fprintf(w, "listening on %s\n", res.URL) }); err != nil {
		ln.Close()
		return err
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	cancel()
	shut, stop := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer stop()
	if err := srv.Shutdown(shut); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return nil
}
