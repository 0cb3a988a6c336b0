//go:build !linux

package cache

import "go.etcd.io/bbolt"

func releaseMapped(*bbolt.Tx) {}
