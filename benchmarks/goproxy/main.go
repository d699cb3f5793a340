// The seed's proxy shape: accept, dial, two io.Copy calls. Go's runtime turns
// each io.Copy between two *net.TCPConn into splice(2) through a pipe.
package main

import (
	"flag"
	"io"
	"log"
	"net"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to accept on")
	upstream := flag.String("upstream", "", "address to relay to")
	flag.Parse()
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("listening on %s", ln.Addr())
	for {
		c, err := ln.Accept()
		if err != nil {
			log.Fatal(err)
		}
		go func(c net.Conn) {
			defer c.Close()
			u, err := net.Dial("tcp", *upstream)
			if err != nil {
				return
			}
			defer u.Close()
			done := make(chan struct{})
			go func() { io.Copy(u, c); u.(*net.TCPConn).CloseWrite(); close(done) }()
			io.Copy(c, u)
			c.(*net.TCPConn).CloseWrite()
			<-done
		}(c)
	}
}
