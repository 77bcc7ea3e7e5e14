package io.xipgate.it.eurekaserver;

import java.io.File;

import org.springframework.boot.SpringApplication;
import org.springframework.boot.web.server.context.WebServerPortFileWriter;
import org.springframework.boot.autoconfigure.SpringBootApplication;
import org.springframework.cloud.netflix.eureka.server.EnableEurekaServer;

/** Spring Cloud's own Eureka server, nothing added: what xipgate's tests sync from. */
@SpringBootApplication
@EnableEurekaServer
public class EurekaServerApp {
    public static void main(String[] args) {
        SpringApplication app = new SpringApplication(EurekaServerApp.class);
        portFile(app, args);
        app.run(args);
    }

    /**
     * With --xipgate.it.port-file=F, the port the server listens on is written to F once it
     * listens: tests start it on port 0 and read the port back, so no port is raced for.
     */
    static void portFile(SpringApplication app, String[] args) {
        for (String a : args) {
            if (a.startsWith("--xipgate.it.port-file=")) {
                app.addListeners(new WebServerPortFileWriter(new File(a.substring(a.indexOf('=') + 1))));
            }
        }
    }
}
