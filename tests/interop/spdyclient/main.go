// spdyclient speaks the kubelet streaming protocols with Go's spdystream,
// the library kubectl, crictl and the kubelet use, so the integration tests
// can check cri-dockerd-rs against the real implementation.
//
// Usage: spdyclient exec <url> [-]   (with -, stdin is sent to the command)
//        spdyclient portforward <url> <port> <payload>
//
// Prints one JSON object: {"stdout", "stderr", "error", "data"}.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/moby/spdystream"
)

type result struct {
	Stdout string `json:"stdout"`
	Stderr string `json:"stderr"`
	Error  string `json:"error"`
	Data   string `json:"data"`
}

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
	os.Exit(1)
}

func upgrade(rawURL, protocol string) *spdystream.Connection {
	u, err := url.Parse(rawURL)
	if err != nil {
		fail("bad url: %v", err)
	}
	conn, err := net.DialTimeout("tcp", u.Host, 10*time.Second)
	if err != nil {
		fail("dial: %v", err)
	}
	req, _ := http.NewRequest("POST", rawURL, nil)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "SPDY/3.1")
	req.Header.Add("X-Stream-Protocol-Version", protocol)
	if err := req.Write(conn); err != nil {
		fail("write request: %v", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), req)
	if err != nil {
		fail("read response: %v", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		fail("upgrade refused: %s", resp.Status)
	}
	if got := resp.Header.Get("X-Stream-Protocol-Version"); got != protocol {
		fail("negotiated %q, wanted %q", got, protocol)
	}
	spdyConn, err := spdystream.NewConnection(conn, false)
	if err != nil {
		fail("spdy: %v", err)
	}
	go spdyConn.Serve(spdystream.NoOpStreamHandler)
	return spdyConn
}

func open(conn *spdystream.Connection, headers http.Header) *spdystream.Stream {
	stream, err := conn.CreateStream(headers, nil, false)
	if err != nil {
		fail("create stream: %v", err)
	}
	if err := stream.WaitTimeout(10 * time.Second); err != nil {
		fail("stream reply: %v", err)
	}
	return stream
}

func readAll(r io.Reader, out *string, wg *sync.WaitGroup) {
	defer wg.Done()
	b, _ := io.ReadAll(r)
	*out = string(b)
}

func main() {
	if len(os.Args) < 3 {
		fail("usage: spdyclient exec|portforward <url> ...")
	}
	var res result
	switch os.Args[1] {
	case "exec":
		// client-go's v4 order: error, stdin, stdout, stderr.
		conn := upgrade(os.Args[2], "v4.channel.k8s.io")
		h := http.Header{}
		h.Set("streamType", "error")
		errStream := open(conn, h)
		var stdin *spdystream.Stream
		if len(os.Args) > 3 {
			h.Set("streamType", "stdin")
			stdin = open(conn, h)
		}
		h.Set("streamType", "stdout")
		stdout := open(conn, h)
		h.Set("streamType", "stderr")
		stderr := open(conn, h)
		if stdin != nil {
			if _, err := io.Copy(stdin, os.Stdin); err != nil {
				fail("stdin: %v", err)
			}
			stdin.Close()
		}
		var wg sync.WaitGroup
		wg.Add(3)
		go readAll(stdout, &res.Stdout, &wg)
		go readAll(stderr, &res.Stderr, &wg)
		go readAll(errStream, &res.Error, &wg)
		wg.Wait()
		conn.Close()
	case "portforward":
		conn := upgrade(os.Args[2], "portforward.k8s.io")
		port, _ := strconv.Atoi(os.Args[3])
		h := http.Header{}
		h.Set("streamType", "error")
		h.Set("port", strconv.Itoa(port))
		h.Set("requestID", "0")
		errStream := open(conn, h)
		h.Set("streamType", "data")
		data := open(conn, h)
		if _, err := data.Write([]byte(os.Args[4])); err != nil {
			fail("data: %v", err)
		}
		data.Close()
		var wg sync.WaitGroup
		wg.Add(2)
		go readAll(data, &res.Data, &wg)
		go readAll(errStream, &res.Error, &wg)
		wg.Wait()
		conn.Close()
	default:
		fail("unknown mode %q", os.Args[1])
	}
	json.NewEncoder(os.Stdout).Encode(res)
}
