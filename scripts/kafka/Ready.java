// Waits until the Kafka broker at HOST:PORT answers metadata requests: `start` of
// scripts/kafka.sh returns only then. Run with the broker's own jars on the class path:
//   java -cp 'LIBS/*' scripts/kafka/Ready.java HOST:PORT SECONDS
// Exit status 0 when the broker lists its cluster and topics, 1 when SECONDS pass first.
import java.util.Properties;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;

public class Ready {
    public static void main(String[] args) throws Exception {
        String addr = args[0];
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(Long.parseLong(args[1]));
        Properties props = new Properties();
        props.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, addr);
        props.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, "2000");
        props.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "2000");
        props.put(AdminClientConfig.RECONNECT_BACKOFF_MAX_MS_CONFIG, "200");
        String last = "no answer";
        try (Admin admin = Admin.create(props)) {
            while (System.nanoTime() < deadline) {
                try {
                    int brokers = admin.describeCluster().nodes().get(2, TimeUnit.SECONDS).size();
                    admin.listTopics().names().get(2, TimeUnit.SECONDS);
                    if (brokers > 0) {
                        System.exit(0);
                    }
                    last = "no broker in the cluster yet";
                } catch (Exception e) {
                    last = String.valueOf(e.getCause() != null ? e.getCause() : e);
                }
                Thread.sleep(200);
            }
        }
        System.err.println("kafka.sh: " + addr + " answers no metadata request: " + last);
        System.exit(1);
    }
}
