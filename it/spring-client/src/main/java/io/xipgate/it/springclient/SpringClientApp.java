package io.xipgate.it.springclient;

import java.util.concurrent.atomic.AtomicBoolean;

import java.io.File;

import org.springframework.boot.SpringApplication;
import org.springframework.boot.web.server.context.WebServerPortFileWriter;
import org.springframework.cloud.netflix.eureka.EurekaInstanceConfigBean;
import org.springframework.boot.health.contributor.Health;
import org.springframework.boot.health.contributor.HealthIndicator;
import org.springframework.boot.autoconfigure.SpringBootApplication;
import org.springframework.http.ResponseEntity;
import org.springframework.web.bind.annotation.GetMapping;
import org.springframework.web.bind.annotation.PostMapping;
import org.springframework.web.bind.annotation.RequestParam;
import org.springframework.web.bind.annotation.RestController;

/**
 * A plain Spring Boot service registered by spring-cloud-starter-netflix-eureka-client with
 * eureka.client.healthcheck.enabled=true: its instanceId, metadata and status all come from
 * Spring itself. POST /health-toggle?up=false makes its health DOWN, which the Eureka client
 * reports to the server on its next replication tick. POST /fail-toggle?fail=true makes
 * /whoami answer 503 while the instance stays UP (a pod that fails without its health
 * saying so: what passive health is for).
 */
@SpringBootApplication
@RestController
public class SpringClientApp {
    private final AtomicBoolean healthy = new AtomicBoolean(true);
    private final AtomicBoolean failing = new AtomicBoolean(false);
    private final EurekaInstanceConfigBean instance;

    public SpringClientApp(EurekaInstanceConfigBean instance) {
        this.instance = instance;
    }

    public static void main(String[] args) {
        SpringApplication app = new SpringApplication(SpringClientApp.class);
        for (String a : args) {
            if (a.startsWith("--xipgate.it.port-file=")) {
                app.addListeners(new WebServerPortFileWriter(new File(a.substring(a.indexOf('=') + 1))));
            }
        }
        app.run(args);
    }

    /** The instanceId Spring registered this instance with. */
    @GetMapping("/whoami")
    public ResponseEntity<String> whoami() {
        String body = "spring " + instance.getInstanceId() + "\n";
        return failing.get() ? ResponseEntity.status(503).body(body) : ResponseEntity.ok(body);
    }

    @PostMapping("/fail-toggle")
    public String failToggle(@RequestParam boolean fail) {
        failing.set(fail);
        return fail ? "FAILING\n" : "ANSWERING\n";
    }

    @PostMapping("/health-toggle")
    public String toggle(@RequestParam boolean up) {
        healthy.set(up);
        return up ? "UP\n" : "DOWN\n";
    }

    @org.springframework.context.annotation.Bean
    HealthIndicator toggleHealth() {
        return () -> healthy.get() ? Health.up().build() : Health.down().withDetail("toggle", "down").build();
    }
}
