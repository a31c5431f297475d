//! EC2's XML answers: `<ActionResponse xmlns=...><requestId/>...</ActionResponse>`, members
//! named by the service model's `locationName` (camelCase), every list's entries `<item>`.

pub const NAMESPACE: &str = "http://ec2.amazonaws.com/doc/2016-11-15/";

/// An element with text or children.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct X {
    name: String,
    text: Option<String>,
    children: Vec<X>,
}

impl X {
    pub fn new(name: &str) -> X {
        X {
            name: name.to_string(),
            text: None,
            children: Vec::new(),
        }
    }

    /// A child `<name>text</name>`.
    pub fn text(mut self, name: &str, text: impl ToString) -> X {
        self.children.push(X {
            text: Some(text.to_string()),
            ..X::new(name)
        });
        self
    }

    /// A child only when there is a value: EC2 leaves out members that are not set.
    pub fn opt(self, name: &str, text: Option<impl ToString>) -> X {
        match text {
            Some(t) => self.text(name, t),
            None => self,
        }
    }

    pub fn child(mut self, c: X) -> X {
        self.children.push(c);
        self
    }

    /// A child list: `<name><item>...</item>...</name>`, each entry built as an `item`.
    pub fn list(mut self, name: &str, items: impl IntoIterator<Item = X>) -> X {
        let mut l = X::new(name);
        for mut i in items {
            i.name = "item".into();
            l.children.push(i);
        }
        self.children.push(l);
        self
    }

    /// A list of plain values: `<name><item>value</item>...</name>`.
    pub fn values(self, name: &str, values: impl IntoIterator<Item = impl ToString>) -> X {
        self.list(
            name,
            values.into_iter().map(|v| X {
                text: Some(v.to_string()),
                ..X::new("item")
            }),
        )
    }

    fn write(&self, out: &mut String) {
        out.push('<');
        out.push_str(&self.name);
        out.push('>');
        if let Some(t) = &self.text {
            out.push_str(&escape(t));
        }
        for c in &self.children {
            c.write(out);
        }
        out.push_str("</");
        out.push_str(&self.name);
        out.push('>');
    }
}

/// The whole answer to `action`: its members are `body`'s children.
pub fn response(action: &str, request_id: &str, body: X) -> String {
    let mut out = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<{action}Response xmlns=\"{NAMESPACE}\"><requestId>{}</requestId>",
        escape(request_id)
    );
    for c in &body.children {
        c.write(&mut out);
    }
    out.push_str(&format!("</{action}Response>"));
    out
}

/// Escapes element text (the answers have no attributes but the fixed `xmlns`).
pub fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            c => o.push(c),
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_are_items_and_text_is_escaped() {
        let body = X::new("body").child(
            X::new("vpc")
                .text("vpcId", "vpc-1")
                .opt("missing", None::<&str>)
                .list(
                    "tagSet",
                    [X::new("t").text("key", "Name").text("value", "a&b")],
                ),
        );
        assert_eq!(
            response("CreateVpc", "r", body),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<CreateVpcResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\"><requestId>r</requestId><vpc><vpcId>vpc-1</vpcId><tagSet><item><key>Name</key><value>a&amp;b</value></item></tagSet></vpc></CreateVpcResponse>"
        );
    }
}
