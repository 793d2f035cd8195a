//! Twenty extraction tasks with a three-field answer type, for the local model's typed
//! answers (`tests/tests/local_model.rs` and the `typed_local_bench` example): a sentence,
//! and the value a correct extraction gives.

use schemars::JsonSchema;
use serde::Deserialize;

/// An order placed in a sentence.
#[derive(Clone, Debug, Deserialize, JsonSchema, PartialEq, Eq)]
pub struct Order {
    /// The customer's first name, as written, e.g. "Maria".
    pub customer: String,
    /// How many items were ordered, as a number, e.g. 2.
    pub quantity: u32,
    /// The item ordered, one word, singular, e.g. "table".
    pub product: String,
}

/// The instructions the tasks run with.
pub const INSTRUCTIONS: &str = "Extract the order from the sentence.";

const TASKS: [(&str, &str, u32, &str); 20] = [
    ("Liam ordered 4 chairs.", "Liam", 4, "chair"),
    ("Emma bought 2 lamps.", "Emma", 2, "lamp"),
    ("Noah wants 7 pencils.", "Noah", 7, "pencil"),
    ("Olivia ordered 3 books.", "Olivia", 3, "book"),
    ("Ava bought 5 cups.", "Ava", 5, "cup"),
    ("Lucas ordered 1 desk.", "Lucas", 1, "desk"),
    ("Mia wants 6 plates.", "Mia", 6, "plate"),
    ("Ethan bought 8 candles.", "Ethan", 8, "candle"),
    ("Sofia ordered 2 rugs.", "Sofia", 2, "rug"),
    ("James wants 9 spoons.", "James", 9, "spoon"),
    ("Chloe ordered 10 towels.", "Chloe", 10, "towel"),
    ("Leo bought 3 mirrors.", "Leo", 3, "mirror"),
    ("Zoe wants 4 pillows.", "Zoe", 4, "pillow"),
    ("Jack ordered 12 forks.", "Jack", 12, "fork"),
    ("Lily bought 1 sofa.", "Lily", 1, "sofa"),
    ("Omar ordered 5 bowls.", "Omar", 5, "bowl"),
    ("Nina wants 2 clocks.", "Nina", 2, "clock"),
    ("Hugo bought 6 glasses.", "Hugo", 6, "glass"),
    ("Iris ordered 11 knives.", "Iris", 11, "knife"),
    ("Paul wants 3 shelves.", "Paul", 3, "shelf"),
];

/// The tasks: each sentence and its correct extraction.
pub fn tasks() -> Vec<(&'static str, Order)> {
    TASKS
        .iter()
        .map(|&(sentence, customer, quantity, product)| {
            (
                sentence,
                Order {
                    customer: customer.into(),
                    quantity,
                    product: product.into(),
                },
            )
        })
        .collect()
}

/// Whether an extraction is right: the same name and number, and the product named (a
/// plural, or a different case, still names it).
pub fn is_correct(got: &Order, want: &Order) -> bool {
    let product = got.product.trim().to_lowercase();
    got.customer.trim() == want.customer
        && got.quantity == want.quantity
        && (product == want.product || product.starts_with(&want.product[..want.product.len() - 1]))
}
