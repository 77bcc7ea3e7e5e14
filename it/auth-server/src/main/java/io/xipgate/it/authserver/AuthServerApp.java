package io.xipgate.it.authserver;

import java.io.File;

import org.springframework.boot.SpringApplication;
import org.springframework.boot.autoconfigure.SpringBootApplication;
import org.springframework.boot.web.server.context.WebServerPortFileWriter;

/**
 * A real OpenID provider for xipgate's tests: Spring Authorization Server with two users,
 * the `xipgate` login client and two client-credentials robots, on loopback. See it/README.md.
 */
@SpringBootApplication
public class AuthServerApp {
    public static void main(String[] args) {
        SpringApplication app = new SpringApplication(AuthServerApp.class);
        for (String a : args) {
            // Tests start it on port 0 and read the port back from this file: no port is raced for.
            if (a.startsWith("--xipgate.it.port-file=")) {
                app.addListeners(new WebServerPortFileWriter(new File(a.substring(a.indexOf('=') + 1))));
            }
        }
        app.run(args);
    }
}
