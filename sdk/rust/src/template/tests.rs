use super::*;
use crate::types::*;

fn msg(role: Role, content: Option<&str>) -> Message {
    Message {
        role,
        content: content.map(str::to_string),
        reasoning: None,
        tool_calls: vec![],
        tool_call_id: None,
        name: None,
    }
}

fn request(messages: Vec<Message>) -> PromptRequest {
    PromptRequest {
        messages,
        tools: vec![],
        tool_choice: ToolChoice::Auto,
        parallel_tool_calls: true,
        add_generation_prompt: true,
        model: ModelConfig {
            chat_template: None,
            bos_token: Some("<s>".into()),
            eos_token: None,
        },
        template_variables: vec![],
    }
}

fn hello() -> PromptRequest {
    request(vec![msg(Role::User, Some("Hello"))])
}

fn render(template: &str, request: &PromptRequest) -> String {
    render_chat_template(template, request).unwrap()
}

#[test]
fn raise_exception_is_an_invalid_request_with_the_templates_message() {
    let template =
        "{% if messages[0].role != 'system' %}{{ raise_exception('System first!') }}{% endif %}";
    assert_eq!(
        render_chat_template(template, &hello()),
        Err(AdapterError::InvalidRequest("System first!".into()))
    );
}

#[test]
fn other_failures_are_typed_too() {
    let e = render_chat_template("{{ messages[0].content + 1 }}", &hello()).unwrap_err();
    assert!(matches!(e, AdapterError::InvalidRequest(_)), "{e:?}");
    let e = render_chat_template("{% for m in messages %}", &hello()).unwrap_err();
    assert!(matches!(e, AdapterError::Unsupported(_)), "{e:?}");
}

#[test]
fn whitespace_like_transformers() {
    let template = "{% for m in messages %}\n    {% if m.role == 'user' %}\n[{{ m.content }}]\n    {% endif %}\n{% endfor %}\n";
    assert_eq!(render(template, &hello()), "[Hello]\n");
}

#[test]
fn loop_controls() {
    let template = "{% for i in [1, 2, 3, 4] %}{% if i == 2 %}{% continue %}{% endif %}{% if i == 4 %}{% break %}{% endif %}{{ i }}{% endfor %}";
    assert_eq!(render(template, &hello()), "13");
}

#[test]
fn tojson_keeps_key_order_and_html() {
    let mut r = hello();
    r.tools = vec![Tool {
        name: "f".into(),
        description: Some("<b>&'</b>".into()),
        parameters: r#"{"type": "object", "properties": {"z": {"type": "string"}, "a": {}}}"#
            .into(),
    }];
    assert_eq!(
        render("{{ tools[0] | tojson }}", &r),
        r#"{"type": "function", "function": {"name": "f", "description": "<b>&'</b>", "parameters": {"type": "object", "properties": {"z": {"type": "string"}, "a": {}}}}}"#
    );
    assert_eq!(
        render(
            "{{ tools[0].function.parameters.properties | tojson(indent=2) }}",
            &r
        ),
        "{\n  \"z\": {\n    \"type\": \"string\"\n  },\n  \"a\": {}\n}"
    );
    assert_eq!(
        render(
            "{{ {'b': 'é', 'a': [1, 2]} | tojson(ensure_ascii=true, sort_keys=true, separators=[',', ':']) }}",
            &r
        ),
        r#"{"a":[1,2],"b":"\u00e9"}"#
    );
}

#[test]
fn prints_values_as_python_does() {
    let template =
        "{{ none }} {{ true }} {{ [1, 'a', none] }} {{ {'k': false} }} {{ 1.0 }} {{ 3 | string }}";
    assert_eq!(
        render(template, &hello()),
        "None True [1, 'a', None] {'k': False} 1.0 3"
    );
}

#[test]
fn python_methods() {
    let template = "{{ '  a b  '.strip().split(' ') | join(',') }} {{ 'x</think>y'.split('</think>')[-1] }} {{ 'abc'.startswith('ab') }} {% for k, v in {'a': 1}.items() %}{{ k }}={{ v }}{% endfor %}";
    assert_eq!(render(template, &hello()), "a,b y True a=1");
}

#[test]
fn messages_have_only_the_keys_that_are_set() {
    let mut assistant = msg(Role::Assistant, None);
    assistant.tool_calls = vec![ToolCall {
        id: Some("call1".into()),
        name: "get_weather".into(),
        arguments: r#"{"city": "Paris", "days": 2}"#.into(),
    }];
    let mut tool = msg(Role::Tool, Some("22C"));
    tool.tool_call_id = Some("call1".into());
    let mut r = request(vec![msg(Role::User, Some("Weather?")), assistant, tool]);
    r.messages[0].name = Some("ann".into());
    let template = "{% for m in messages %}{{ m.role }}:{{ m.content is none }},{{ m.tool_calls is defined }},{{ m.tool_call_id is defined }},{{ 'name' in m }};{% endfor %}";
    assert_eq!(
        render(template, &r),
        "user:False,False,False,True;assistant:True,True,False,False;tool:False,False,True,False;"
    );
    let template = "{% set c = messages[1].tool_calls[0] %}{{ c.id }} {{ c.type }} {{ c.function.name }} {{ c.function.arguments.city }} {{ c.function.arguments | tojson }}";
    assert_eq!(
        render(template, &r),
        r#"call1 function get_weather Paris {"city": "Paris", "days": 2}"#
    );
}

#[test]
fn reasoning_is_reasoning_content() {
    let mut assistant = msg(Role::Assistant, Some("4"));
    assistant.reasoning = Some("2 + 2".into());
    let r = request(vec![msg(Role::User, Some("2+2?")), assistant]);
    assert_eq!(
        render(
            "{{ messages[1].reasoning_content }}|{{ messages[0].reasoning_content is defined }}",
            &r
        ),
        "2 + 2|False"
    );
}

#[test]
fn special_tokens_and_variables() {
    let mut r = hello();
    assert_eq!(
        render(
            "{{ bos_token }}|{{ eos_token is defined }}|{{ tools is none }}|{{ documents is none }}",
            &r
        ),
        "<s>|False|True|True"
    );
    r.template_variables = vec![
        ("enable_thinking".into(), "false".into()),
        ("bos_token".into(), "\"<BOS>\"".into()),
        ("extra".into(), r#"{"b": 1, "a": [true]}"#.into()),
    ];
    assert_eq!(
        render(
            "{{ enable_thinking is false }}|{{ bos_token }}|{{ extra | tojson }}",
            &r
        ),
        r#"True|<BOS>|{"b": 1, "a": [true]}"#
    );
}

#[test]
fn strftime_now_can_be_pinned() {
    let mut r = hello();
    r.template_variables = vec![(NOW_VARIABLE.into(), "\"2025-03-04T09:05:07\"".into())];
    assert_eq!(
        render(
            "{{ strftime_now('%d %b %Y') }} {{ strftime_now('%B %d, %Y %H:%M') }}",
            &r
        ),
        "04 Mar 2025 March 04, 2025 09:05"
    );
    r.template_variables = vec![(NOW_VARIABLE.into(), "\"yesterday\"".into())];
    assert!(matches!(
        render_chat_template("x", &r),
        Err(AdapterError::InvalidRequest(m)) if m.contains(NOW_VARIABLE)
    ));
    // Unpinned, it reads the clock: some four-digit year.
    assert_eq!(render("{{ strftime_now('%Y') | length }}", &hello()), "4");
}

#[test]
fn generation_marks_render_their_body() {
    let template = "{% for m in messages %}{% generation %}\n{{ m.content }}{%- endgeneration -%}\n!{% endfor %}";
    assert_eq!(render(template, &hello()), "Hello!");
    assert_eq!(
        accept_generation_marks("{%- generation +%}a{%endgeneration%}{% if x %}"),
        "{%- if true +%}a{% endif %}{% if x %}"
    );
}
