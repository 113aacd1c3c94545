// A Java service's logging as the platform's teams write it: log4j2 with its GelfLayout, sending
// to peng over GELF TCP, UDP and HTTP (log4j2.xml next to this file), the team named by the
// ingest token peng hands its instances (PENG_INGEST_TOKEN), per-request fields in the thread
// context, and a failure logged with its exception.
//
// Usage: java -Dlog4j2.configurationFile=log4j2.xml -Dgelf.host=H -Dgelf.tcp.port=P
//        -Dgelf.udp.port=P -Dgelf.http.url=URL GelfClient MARKER
// Every appender has ignoreExceptions="false": a message log4j2 could not send (no connection,
// an HTTP answer other than 2xx) makes this program fail instead of being lost in silence.

import org.apache.logging.log4j.LogManager;
import org.apache.logging.log4j.Logger;
import org.apache.logging.log4j.ThreadContext;

public final class GelfClient {
    /** The failure the test finds by its name in full_message. */
    static final class PaymentDeclinedException extends RuntimeException {
        PaymentDeclinedException(String message, Throwable cause) {
            super(message, cause);
        }
    }

    /** How deep the failure is thrown: its stack trace is more than 1 KiB, as real ones are. */
    static final int DEPTH = 40;

    /** Calls itself `depth` times, then fails, with a cause. */
    static void charge(String marker, int depth) {
        if (depth == 0) {
            throw new PaymentDeclinedException(
                    "card declined for " + marker, new java.io.IOException("gateway timed out"));
        }
        charge(marker, depth - 1);
    }

    public static void main(String[] args) {
        if (args.length != 1) {
            System.err.println("usage: GelfClient MARKER");
            System.exit(2);
        }
        String marker = args[0];
        try {
            for (String transport : new String[] {"tcp", "udp", "http"}) {
                Logger log = LogManager.getLogger("gelf." + transport);
                ThreadContext.put("order_id", "4711");
                ThreadContext.put("customer", "Zoë");
                log.info("order {} placed over {} für Zoë", marker, transport);
                log.warn("order {} slow over {}", marker, transport);
                try {
                    charge(marker, DEPTH);
                } catch (PaymentDeclinedException e) {
                    log.error("payment for order " + marker + " failed over " + transport, e);
                }
                ThreadContext.clearMap();
            }
        } finally {
            // Flushes and closes the appenders' connections.
            LogManager.shutdown();
        }
    }
}
