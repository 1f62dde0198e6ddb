package vigil.r4validator;

import ca.uhn.fhir.context.FhirContext;
import ca.uhn.fhir.parser.DataFormatException;
import ca.uhn.fhir.parser.IParser;
import ca.uhn.fhir.parser.StrictErrorHandler;
import ca.uhn.fhir.validation.FhirValidator;
import ca.uhn.fhir.validation.SingleValidationMessage;
import ca.uhn.fhir.validation.ValidationResult;
import ca.uhn.fhir.context.support.DefaultProfileValidationSupport;
import org.hl7.fhir.common.hapi.validation.support.CommonCodeSystemsTerminologyService;
import org.hl7.fhir.common.hapi.validation.support.InMemoryTerminologyServerValidationSupport;
import org.hl7.fhir.common.hapi.validation.support.SnapshotGeneratingValidationSupport;
import org.hl7.fhir.common.hapi.validation.support.ValidationSupportChain;
import org.hl7.fhir.common.hapi.validation.validator.FhirInstanceValidator;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.Stream;

/**
 * Strict-parses and validates every *.json file of a directory as an R4 resource, offline
 * (R4 core definitions only, in-memory terminology). Prints one JSON object per file on stdout:
 * {"file": name, "issues": [{"severity", "location", "messageId", "message"}]}.
 * A strict-parse failure is reported as one issue with messageId "strict-parse".
 * Exit code 0 when it ran (the caller judges the issues), 2 on usage or I/O errors.
 */
public final class Main {
  public static void main(String[] args) throws IOException {
    if (args.length != 1) {
      System.err.println("usage: r4-validator DIR");
      System.exit(2);
    }
    FhirContext ctx = FhirContext.forR4();
    IParser strict = ctx.newJsonParser().setParserErrorHandler(new StrictErrorHandler());
    ValidationSupportChain chain = new ValidationSupportChain(
        new DefaultProfileValidationSupport(ctx),
        new CommonCodeSystemsTerminologyService(ctx),
        new InMemoryTerminologyServerValidationSupport(ctx),
        new SnapshotGeneratingValidationSupport(ctx));
    FhirInstanceValidator module = new FhirInstanceValidator(chain);
    module.setAnyExtensionsAllowed(true);
    module.setErrorForUnknownProfiles(false);
    FhirValidator validator = ctx.newValidator().registerValidatorModule(module);

    List<Path> files = new ArrayList<>();
    try (Stream<Path> s = Files.list(Path.of(args[0]))) {
      s.filter(p -> p.toString().endsWith(".json")).sorted().forEach(files::add);
    }
    StringBuilder out = new StringBuilder();
    for (Path file : files) {
      String text = Files.readString(file, StandardCharsets.UTF_8);
      List<String> issues = new ArrayList<>();
      try {
        strict.parseResource(text);
      } catch (DataFormatException | IllegalArgumentException e) {
        issues.add(issue("fatal", "", "strict-parse", String.valueOf(e.getMessage())));
      }
      if (issues.isEmpty()) {
        ValidationResult result = validator.validateWithResult(text);
        for (SingleValidationMessage m : result.getMessages()) {
          issues.add(issue(m.getSeverity().getCode(), m.getLocationString(), m.getMessageId(), m.getMessage()));
        }
      }
      out.append("{\"file\":").append(quote(file.getFileName().toString()))
          .append(",\"issues\":[").append(String.join(",", issues)).append("]}\n");
    }
    System.out.print(out);
    System.out.flush();
  }

  private static String issue(String severity, String location, String id, String message) {
    return "{\"severity\":" + quote(severity) + ",\"location\":" + quote(location)
        + ",\"messageId\":" + quote(id) + ",\"message\":" + quote(message) + "}";
  }

  private static String quote(String s) {
    if (s == null) return "null";
    StringBuilder b = new StringBuilder("\"");
    for (char c : s.toCharArray()) {
      switch (c) {
        case '"' -> b.append("\\\"");
        case '\\' -> b.append("\\\\");
        case '\n' -> b.append("\\n");
        case '\r' -> b.append("\\r");
        case '\t' -> b.append("\\t");
        default -> {
          if (c < 0x20) b.append(String.format("\\u%04x", (int) c));
          else b.append(c);
        }
      }
    }
    return b.append('"').toString();
  }
}
