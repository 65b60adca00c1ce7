// A TLS 1.3 test peer on Java JSSE, for bench/inference_corpus.py (compiled there with javac; run as
// `java -cp DIR Peer ROLE PORT N SERVER_MODE CERT_P12|- CLIENT_MODE TRUST_PEM HRR(0|1) RESUME(0|1) SERVER_DATA(0|1)`).
// JSSE writes no key log, so the script pairs it only with a peer that does. Same behaviour as peer.go.
import java.io.*;
import java.net.*;
import java.security.*;
import java.security.cert.*;
import javax.net.ssl.*;

public class Peer {
    static SSLContext context(String p12, String trustPem) throws Exception {
        KeyManager[] kms = null;
        if (!p12.equals("-")) {
            KeyStore ks = KeyStore.getInstance("PKCS12");
            try (InputStream in = new FileInputStream(p12)) { ks.load(in, "changeit".toCharArray()); }
            KeyManagerFactory kmf = KeyManagerFactory.getInstance("SunX509");
            kmf.init(ks, "changeit".toCharArray());
            kms = kmf.getKeyManagers();
        }
        KeyStore ts = KeyStore.getInstance("PKCS12");
        ts.load(null, null);
        try (InputStream in = new FileInputStream(trustPem)) {
            ts.setCertificateEntry("ca", CertificateFactory.getInstance("X.509").generateCertificate(in));
        }
        TrustManagerFactory tmf = TrustManagerFactory.getInstance("PKIX");
        tmf.init(ts);
        SSLContext ctx = SSLContext.getInstance("TLSv1.3");
        ctx.init(kms, tmf.getTrustManagers(), null);
        return ctx;
    }

    static String drain(SSLSocket s, long lingerMs, boolean answer) {
        long deadline = System.currentTimeMillis() + lingerMs;
        byte[] buf = new byte[4096];
        try {
            InputStream in = s.getInputStream();
            OutputStream out = s.getOutputStream();
            while (System.currentTimeMillis() < deadline) {
                s.setSoTimeout((int) Math.max(1, deadline - System.currentTimeMillis()));
                int n;
                try { n = in.read(buf); } catch (SocketTimeoutException e) { return "linger over"; }
                if (n < 0) return "eof";
                if (answer && new String(buf, 0, n).startsWith("GET")) {
                    out.write("HTTP/1.0 200 OK\r\ncontent-length: 3\r\n\r\nok\n".getBytes());
                    out.flush();
                }
            }
            return "linger over";
        } catch (IOException e) {
            return "error: " + e;
        }
    }

    public static void main(String[] a) throws Exception {
        String role = a[0];
        int port = Integer.parseInt(a[1]), n = Integer.parseInt(a[2]);
        String mode = a[3], p12 = a[4], clientMode = a[5], trust = a[6];
        boolean serverData = a[9].equals("1");
        long linger = 600;
        SSLContext ctx = context(p12, trust);
        if (role.equals("server")) {
            SSLServerSocket ls = (SSLServerSocket) ctx.getServerSocketFactory()
                .createServerSocket(port, n, InetAddress.getByName("127.0.0.1"));
            ls.setEnabledProtocols(new String[] {"TLSv1.3"});
            if (mode.equals("optional")) ls.setWantClientAuth(true);
            if (mode.equals("required")) ls.setNeedClientAuth(true);
            System.out.println("READY");
            for (int i = 1; i <= n; i++) {
                try (SSLSocket s = (SSLSocket) ls.accept()) {
                    s.setSoTimeout(5000);
                    try {
                        s.startHandshake();
                        if (serverData) { s.getOutputStream().write("srv\n".getBytes()); s.getOutputStream().flush(); }
                        System.out.println("connection " + i + ": " + drain(s, linger + 2000, true));
                    } catch (IOException e) {
                        System.out.println("connection " + i + ": handshake failed: " + e);
                    }
                }
            }
            return;
        }
        boolean resume = a[8].equals("1");
        for (int i = 1; i <= n; i++) {
            // A context keeps its session cache: without resumption, each connection gets a fresh one.
            SSLContext c = resume ? ctx : context(p12, trust);
            try (SSLSocket s = (SSLSocket) c.getSocketFactory().createSocket("127.0.0.1", port)) {
                s.setEnabledProtocols(new String[] {"TLSv1.3"});
                SSLParameters params = s.getSSLParameters();
                params.setServerNames(java.util.List.of(new SNIHostName("server.helloscope.test")));
                params.setEndpointIdentificationAlgorithm("HTTPS");
                s.setSSLParameters(params);
                s.setSoTimeout(5000);
                s.startHandshake();
                OutputStream out = s.getOutputStream();
                String ended = "";
                if (clientMode.equals("data")) { out.write("hi\n".getBytes()); out.flush(); ended = drain(s, linger, false); }
                else if (clientMode.equals("http")) {
                    out.write("GET / HTTP/1.0\r\nHost: server.helloscope.test\r\n\r\n".getBytes()); out.flush();
                    ended = drain(s, linger, false);
                } else if (clientMode.equals("quiet")) ended = drain(s, linger, false);
                System.out.println("connection " + i + ": " + ended);
            } catch (IOException e) {
                System.out.println("connection " + i + ": " + e);
            }
            Thread.sleep(100);
        }
    }
}
