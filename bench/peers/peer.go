// A TLS 1.3 test peer on Go's crypto/tls, for bench/inference_corpus.py (built there with `go build`).
//
// One JSON argument (the script's peer spec): role server|client, port, n connections, keylog, server_mode
// none|optional|required, cert (client certificate name under pki) , hrr, resume, client_mode
// data|http|quiet|close|abort|abort-resumed, server_data. Behaviour is this program's, not a Go default:
// the server answers a line starting with GET with a small HTTP response, reads until EOF or a linger,
// then closes (close_notify); the client writes, reads for a linger and closes.
package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

type spec struct {
	Role       string  `json:"role"`
	Port       int     `json:"port"`
	N          int     `json:"n"`
	Keylog     string  `json:"keylog"`
	ServerMode string  `json:"server_mode"`
	Cert       *string `json:"cert"`
	HRR        bool    `json:"hrr"`
	Resume     bool    `json:"resume"`
	ClientMode string  `json:"client_mode"`
	ServerData bool    `json:"server_data"`
	PKI        string  `json:"pki"`
	SNI        string  `json:"sni"`
	Linger     float64 `json:"linger"`
}

func pool(path string) *x509.CertPool {
	p := x509.NewCertPool()
	data, err := os.ReadFile(path)
	if err != nil {
		panic(err)
	}
	p.AppendCertsFromPEM(data)
	return p
}

func drain(c *tls.Conn, linger time.Duration, answer bool) string {
	deadline := time.Now().Add(linger)
	buf := make([]byte, 4096)
	for time.Now().Before(deadline) {
		c.SetReadDeadline(deadline)
		n, err := c.Read(buf)
		if n > 0 && answer && strings.HasPrefix(string(buf[:n]), "GET") {
			c.Write([]byte("HTTP/1.0 200 OK\r\ncontent-length: 3\r\n\r\nok\n"))
		}
		if err != nil {
			return err.Error()
		}
	}
	return "linger over"
}

func main() {
	var s spec
	if err := json.Unmarshal([]byte(os.Args[1]), &s); err != nil {
		panic(err)
	}
	kl, err := os.OpenFile(s.Keylog, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		panic(err)
	}
	linger := time.Duration(s.Linger * float64(time.Second))
	cfg := &tls.Config{MinVersion: tls.VersionTLS13, MaxVersion: tls.VersionTLS13, KeyLogWriter: kl}
	if s.Role == "server" {
		cert, err := tls.LoadX509KeyPair(filepath.Join(s.PKI, "server.pem"), filepath.Join(s.PKI, "server.key"))
		if err != nil {
			panic(err)
		}
		cfg.Certificates = []tls.Certificate{cert}
		cfg.ClientCAs = pool(filepath.Join(s.PKI, "ca.pem"))
		cfg.ClientAuth = map[string]tls.ClientAuthType{
			"none": tls.NoClientCert, "optional": tls.VerifyClientCertIfGiven, "required": tls.RequireAndVerifyClientCert,
		}[s.ServerMode]
		if s.HRR {
			cfg.CurvePreferences = []tls.CurveID{tls.CurveP384}
		}
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", s.Port))
		if err != nil {
			panic(err)
		}
		fmt.Println("READY")
		for i := 1; i <= s.N; i++ {
			raw, err := ln.Accept()
			if err != nil {
				panic(err)
			}
			c := tls.Server(raw, cfg)
			c.SetDeadline(time.Now().Add(5 * time.Second))
			if err := c.Handshake(); err != nil {
				fmt.Printf("connection %d: handshake failed: %v\n", i, err)
				c.Close()
				continue
			}
			c.SetDeadline(time.Time{})
			if s.ServerData {
				c.Write([]byte("srv\n"))
			}
			fmt.Printf("connection %d: resumed=%v %s\n", i, c.ConnectionState().DidResume, drain(c, linger+2*time.Second, true))
			c.Close()
		}
		return
	}
	ca := "ca.pem"
	if strings.HasPrefix(s.ClientMode, "abort") && s.ClientMode != "abort-resumed" {
		ca = "untrusted-ca.pem"
	}
	cfg.RootCAs = pool(filepath.Join(s.PKI, ca))
	cfg.ServerName = s.SNI
	if s.Cert != nil {
		cert, err := tls.LoadX509KeyPair(filepath.Join(s.PKI, *s.Cert+".pem"), filepath.Join(s.PKI, *s.Cert+".key"))
		if err != nil {
			panic(err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	if s.Resume {
		cfg.ClientSessionCache = tls.NewLRUClientSessionCache(4)
	}
	for i := 1; i <= s.N; i++ {
		if s.ClientMode == "abort-resumed" {
			// Refuse the connection once it is resumed (as a client pinning a certificate might).
			cfg.VerifyConnection = func(cs tls.ConnectionState) error {
				if cs.DidResume {
					return errors.New("refusing the resumed session")
				}
				return nil
			}
		}
		raw, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", s.Port), 5*time.Second)
		if err != nil {
			fmt.Printf("connection %d: %v\n", i, err)
			continue
		}
		c := tls.Client(raw, cfg)
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if err := c.Handshake(); err != nil {
			fmt.Printf("connection %d: handshake failed: %v\n", i, err)
			c.Close()
			time.Sleep(100 * time.Millisecond)
			continue
		}
		c.SetDeadline(time.Time{})
		ended := ""
		switch s.ClientMode {
		case "data", "abort-resumed":
			c.Write([]byte("hi\n"))
			ended = drain(c, linger, false)
		case "http":
			c.Write([]byte("GET / HTTP/1.0\r\nHost: " + s.SNI + "\r\n\r\n"))
			ended = drain(c, linger, false)
		case "quiet":
			ended = drain(c, linger, false)
		}
		fmt.Printf("connection %d: resumed=%v %s\n", i, c.ConnectionState().DidResume, ended)
		c.Close()
		time.Sleep(100 * time.Millisecond)
	}
}
