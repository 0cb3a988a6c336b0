//go:build !unix

package process
