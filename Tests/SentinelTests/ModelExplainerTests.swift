import Sentinel
import SpiritCore
import Testing

@Suite struct ModelExplainerTests {
    let rule = Rule(id: "oom-kill", signal: .kmsgOOMKill, comparison: .atLeast, threshold: 1, severity: .critical, advice: "Raise memory-max.")
    var incident: Incident {
        Incident(id: 1, rule: "oom-kill", severity: .critical, service: "leaky", condition: rule.condition, pendingAt: 0, firingAt: 0,
                 evidence: ["Memory cgroup out of memory: Killed process 4242 (leaky)"], value: 1, peak: 1)
    }

    func completion(_ content: String) -> [UInt8] { Array("{\"content\":\(jsonString(content)),\"stop\":true}".utf8) }

    @Test func aSentenceInTimeComesAfterTheFacts() {
        let explainer = ModelExplainer { body, deadline in
            #expect(deadline == 500)
            let request = try? JSONReader.parse(body)
            #expect(request?["temperature"]?.integer == 0 && request?["json_schema"] != nil)
            #expect(request?["prompt"]?.string?.contains("Killed process 4242 (leaky)") == true)
            return (200, self.completion("{\"summary\": \"The leaky service used more memory than its limit and the kernel killed it.\"}"))
        }
        let facts = TemplateExplainer().explain(incident, rule: rule)
        #expect(explainer.explain(incident, rule: rule) == facts + " The model says: The leaky service used more memory than its limit and the kernel killed it.")
    }

    @Test(arguments: [
        (200, "not json at all"), (200, "{\"summary\": \"short\"}"), (200, "{\"cause\": \"memory\"}"), (503, "{\"summary\": \"a long enough sentence here.\"}"),
        (200, "{\"summary\": \"two\\nlines of it, which is not one sentence\"}"),
    ])
    func anythingElseLeavesTheTemplate(status: Int, content: String) {
        let explainer = ModelExplainer { _, _ in (status, self.completion(content)) }
        #expect(explainer.explain(incident, rule: rule) == TemplateExplainer().explain(incident, rule: rule))
    }

    @Test func noAnswerInTimeLeavesTheTemplate() {
        let explainer = ModelExplainer { _, _ in nil }
        let text = explainer.explain(incident, rule: rule)
        #expect(text == TemplateExplainer().explain(incident, rule: rule))
        #expect(text.contains("service leaky") && text.contains("Killed process 4242"), "the service and the evidence are always named")
    }
}
