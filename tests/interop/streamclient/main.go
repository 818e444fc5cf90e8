// streamclient speaks the kubelet streaming protocols with the Go libraries
// kubectl, crictl and the kubelet are built on (Debian's packages of
// spdystream, gorilla/websocket and x/term), so the integration tests check
// cri-dockerd-rs against real implementations rather than our own.
//
// Usage:
//
//	streamclient exec <url> [-]
//	    SPDY v4 remote command without a TTY (with -, stdin is sent).
//	    Prints {"stdout", "stderr", "error"}.
//	streamclient portforward <url> <port> <payload>
//	    SPDY port-forward: one connection, payload sent, reply read.
//	    Prints {"data", "error"}.
//	streamclient tunnel-portforward <url> <port> <payload> [<port> <payload>...]
//	    The same over SPDY tunnelled in WebSocket (subprotocol
//	    SPDY/3.1+portforward.k8s.io), as kubectl 1.31+ and crictl 1.34
//	    `--transport websocket` do; one connection per port, concurrently.
//	    Prints {"data": [...], "error": [...]}.
//	streamclient ws-tty <url>
//	    An interactive v5 WebSocket remote command on this process's
//	    terminal, as crictl's WebSocket executor runs `exec -it`/`attach -it`:
//	    raw mode, the terminal size sent at start and on SIGWINCH, stdin
//	    copied, stdout to the terminal; exits with the remote exit code.
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
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/gorilla/websocket"
	"github.com/moby/spdystream"
	"golang.org/x/term"
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

// tunnelConn is a WebSocket as a byte stream: binary messages in, one
// binary message per write out (client-go's TunnelingConnection does the
// same).
type tunnelConn struct {
	*websocket.Conn
	reader io.Reader
}

func (c *tunnelConn) Read(p []byte) (int, error) {
	for {
		if c.reader == nil {
			kind, r, err := c.NextReader()
			if err != nil {
				if websocket.IsCloseError(err, websocket.CloseNormalClosure) {
					return 0, io.EOF
				}
				return 0, err
			}
			if kind != websocket.BinaryMessage {
				return 0, fmt.Errorf("unexpected message type %d", kind)
			}
			c.reader = r
		}
		n, err := c.reader.Read(p)
		if n == 0 && err == io.EOF {
			c.reader = nil
			continue
		}
		return n, err
	}
}

func (c *tunnelConn) Write(p []byte) (int, error) {
	if err := c.WriteMessage(websocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (c *tunnelConn) Close() error {
	msg := websocket.FormatCloseMessage(websocket.CloseNormalClosure, "")
	_ = c.WriteControl(websocket.CloseMessage, msg, time.Now().Add(time.Second))
	return c.Conn.Close()
}

func (c *tunnelConn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.SetWriteDeadline(t)
}

// dialWebSocket upgrades the streaming URL to WebSocket, offering protocols.
func dialWebSocket(rawURL string, protocols ...string) *websocket.Conn {
	u, err := url.Parse(rawURL)
	if err != nil {
		fail("bad url: %v", err)
	}
	u.Scheme = "ws"
	dialer := websocket.Dialer{Subprotocols: protocols, HandshakeTimeout: 10 * time.Second}
	ws, resp, err := dialer.Dial(u.String(), nil)
	if err != nil {
		status := ""
		if resp != nil {
			status = resp.Status
		}
		fail("websocket dial: %v %s", err, status)
	}
	return ws
}

func tunnelPortForward(rawURL string, pairs []string) {
	const protocol = "SPDY/3.1+portforward.k8s.io"
	ws := dialWebSocket(rawURL, protocol)
	if ws.Subprotocol() != protocol {
		fail("negotiated %q, wanted %q", ws.Subprotocol(), protocol)
	}
	conn, err := spdystream.NewConnection(&tunnelConn{Conn: ws}, false)
	if err != nil {
		fail("spdy: %v", err)
	}
	go conn.Serve(spdystream.NoOpStreamHandler)
	n := len(pairs) / 2
	data := make([]string, n)
	errs := make([]string, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			port, _ := strconv.Atoi(pairs[2*i])
			h := http.Header{}
			h.Set("streamType", "error")
			h.Set("port", strconv.Itoa(port))
			h.Set("requestID", strconv.Itoa(i))
			errStream := open(conn, h)
			h.Set("streamType", "data")
			dataStream := open(conn, h)
			if _, err := dataStream.Write([]byte(pairs[2*i+1])); err != nil {
				fail("data: %v", err)
			}
			dataStream.Close()
			var inner sync.WaitGroup
			inner.Add(2)
			go readAll(dataStream, &data[i], &inner)
			go readAll(errStream, &errs[i], &inner)
			inner.Wait()
		}(i)
	}
	wg.Wait()
	conn.Close()
	json.NewEncoder(os.Stdout).Encode(map[string][]string{"data": data, "error": errs})
}

type terminalSize struct {
	Width  uint16
	Height uint16
}

type status struct {
	Status  string `json:"status"`
	Message string `json:"message"`
	Details struct {
		Causes []struct {
			Reason  string `json:"reason"`
			Message string `json:"message"`
		} `json:"causes"`
	} `json:"details"`
}

func wsTTY(rawURL string) {
	ws := dialWebSocket(rawURL, "v5.channel.k8s.io", "v4.channel.k8s.io")
	var writeMu sync.Mutex
	send := func(channel byte, payload []byte) error {
		writeMu.Lock()
		defer writeMu.Unlock()
		return ws.WriteMessage(websocket.BinaryMessage, append([]byte{channel}, payload...))
	}
	fd := int(os.Stdin.Fd())
	if !term.IsTerminal(fd) {
		fail("stdin is not a terminal")
	}
	saved, err := term.MakeRaw(fd)
	if err != nil {
		fail("raw mode: %v", err)
	}
	restore := func() { term.Restore(fd, saved) }
	sendSize := func() {
		w, h, err := term.GetSize(fd)
		if err != nil {
			return
		}
		b, _ := json.Marshal(terminalSize{Width: uint16(w), Height: uint16(h)})
		send(4, b)
	}
	sendSize()
	winch := make(chan os.Signal, 1)
	signal.Notify(winch, syscall.SIGWINCH)
	go func() {
		for range winch {
			sendSize()
		}
	}()
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := os.Stdin.Read(buf)
			if n > 0 {
				if send(0, buf[:n]) != nil {
					return
				}
			}
			if err != nil {
				send(255, []byte{0})
				return
			}
		}
	}()
	var final status
	for {
		kind, msg, err := ws.ReadMessage()
		if err != nil {
			break
		}
		if kind != websocket.BinaryMessage || len(msg) == 0 {
			continue
		}
		switch msg[0] {
		case 1, 2:
			os.Stdout.Write(msg[1:])
		case 3:
			json.Unmarshal(msg[1:], &final)
		}
	}
	restore()
	if final.Status == "Success" {
		os.Exit(0)
	}
	for _, cause := range final.Details.Causes {
		if cause.Reason == "ExitCode" {
			code, _ := strconv.Atoi(cause.Message)
			fmt.Fprintf(os.Stderr, "\r\ncommand terminated with exit code %d\r\n", code)
			os.Exit(code)
		}
	}
	fail("\r\nno exit status: %q", final.Message)
}

func main() {
	if len(os.Args) < 3 {
		fail("usage: streamclient exec|portforward|tunnel-portforward|ws-tty <url> ...")
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
	case "tunnel-portforward":
		if len(os.Args) < 5 || len(os.Args[3:])%2 != 0 {
			fail("usage: streamclient tunnel-portforward <url> <port> <payload> [...]")
		}
		tunnelPortForward(os.Args[2], os.Args[3:])
		return
	case "ws-tty":
		wsTTY(os.Args[2])
		return
	default:
		fail("unknown mode %q", os.Args[1])
	}
	json.NewEncoder(os.Stdout).Encode(res)
}
