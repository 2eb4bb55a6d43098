//! The demo data set, generated deterministically from a fixed seed so every run (and every benchmark of the demo)
//! serves the same products, customers and quotations.
//!
//! Pure generation, no I/O: [`generate`] returns plain rows and [`crate::db`] inserts them.

use std::collections::HashSet;

/// Number of products; [`generate`] builds more candidates than this and keeps a shuffled selection.
pub(crate) const PRODUCTS: usize = 1_000;
/// Number of customers.
pub(crate) const CUSTOMERS: usize = 200;
/// Number of quotations; each has 1 to [`MAX_LINES`] lines.
pub(crate) const QUOTATIONS: usize = 2_000;
/// Most lines on one quotation.
pub(crate) const MAX_LINES: u64 = 10;
/// Products with less stock than this count as low on the dashboard.
pub(crate) const LOW_STOCK: i64 = 10;

/// The instant the generated history ends at: 2025-07-01T00:00:00Z. Fixed so the data does not depend on the clock.
const HISTORY_END_UNIX: i64 = 1_751_328_000;
/// Quotations and product updates are spread over the year before [`HISTORY_END_UNIX`].
const HISTORY_SECS: u64 = 365 * 86_400;

/// splitmix64: a tiny, well-mixed PRNG, enough for demo data and free of dependencies.
#[derive(Debug, Clone)]
pub(crate) struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator starting from `seed`.
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`), by multiply-shift; the tiny bias does not matter here.
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// A number in `lo..=hi`.
    pub(crate) fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    /// An index into a non-empty collection of `len` items.
    pub(crate) fn index(&mut self, len: usize) -> usize {
        self.below(len as u64) as usize
    }

    /// One element of a non-empty slice.
    pub(crate) fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.index(items.len())]
    }
}

/// A product row.
#[derive(Debug, Clone)]
pub(crate) struct ProductSeed {
    pub(crate) id: i64,
    pub(crate) sku: String,
    pub(crate) name: String,
    pub(crate) category: &'static str,
    pub(crate) price_cents: i64,
    pub(crate) stock: i64,
    pub(crate) updated_at: String,
}

/// A customer row: a patient or an organisation (care home, practice) buying on account.
#[derive(Debug, Clone)]
pub(crate) struct CustomerSeed {
    pub(crate) id: i64,
    pub(crate) name: String,
    pub(crate) email: String,
    pub(crate) city: &'static str,
    pub(crate) phone: String,
}

/// A quotation row with its lines; `total_cents` is the sum of the lines.
#[derive(Debug, Clone)]
pub(crate) struct QuotationSeed {
    pub(crate) id: i64,
    pub(crate) customer_id: i64,
    pub(crate) status: &'static str,
    pub(crate) created_at: String,
    pub(crate) total_cents: i64,
    pub(crate) lines: Vec<LineSeed>,
}

/// One line of a quotation, priced at the product's price.
#[derive(Debug, Clone)]
pub(crate) struct LineSeed {
    pub(crate) product_id: i64,
    pub(crate) quantity: i64,
    pub(crate) unit_price_cents: i64,
}

/// The whole generated data set.
#[derive(Debug)]
pub(crate) struct Catalog {
    pub(crate) products: Vec<ProductSeed>,
    pub(crate) customers: Vec<CustomerSeed>,
    pub(crate) quotations: Vec<QuotationSeed>,
}

/// Generates the data set; the same `seed` always gives the same rows.
pub(crate) fn generate(seed: u64) -> Catalog {
    let mut rng = SplitMix64::new(seed);
    let products = products(&mut rng);
    let customers = customers(&mut rng);
    let quotations = quotations(&mut rng, &products, customers.len() as u64);
    Catalog {
        products,
        customers,
        quotations,
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Products: "<ingredient> <strength> <form> <pack>", e.g. "Paracetamol 500mg tablets x20".

/// How a pack size is written.
#[derive(Clone, Copy)]
enum Unit {
    /// `x20`
    Count,
    /// `100ml`
    Millilitres,
    /// `50g`
    Grams,
    /// `200 doses`
    Doses,
}

/// A dosage form and the pack sizes it comes in.
struct Presentation {
    form: &'static str,
    unit: Unit,
    packs: &'static [u32],
}

/// Shorthand for the tables below.
const fn form(form: &'static str, unit: Unit, packs: &'static [u32]) -> Presentation {
    Presentation { form, unit, packs }
}

#[rustfmt::skip]
const TABLETS: &[Presentation] = &[
    form("tablets", Unit::Count, &[14, 16, 20, 28, 30, 56, 100]),
    form("film-coated tablets", Unit::Count, &[28, 30, 56]),
];
#[rustfmt::skip]
const SOLUBLE: &[Presentation] = &[
    form("tablets", Unit::Count, &[16, 20, 32, 100]),
    form("soluble tablets", Unit::Count, &[20, 24]),
    form("capsules", Unit::Count, &[16, 32]),
];
#[rustfmt::skip]
const CAPSULES: &[Presentation] = &[
    form("capsules", Unit::Count, &[14, 21, 28, 30, 56, 100]),
    form("gastro-resistant capsules", Unit::Count, &[14, 28]),
];
#[rustfmt::skip]
const LIQUIDS: &[Presentation] = &[
    form("oral suspension", Unit::Millilitres, &[100, 150, 200, 500]),
    form("oral solution", Unit::Millilitres, &[100, 300]),
];
#[rustfmt::skip]
const INHALERS: &[Presentation] = &[
    form("inhaler", Unit::Doses, &[120, 200]),
    form("breath-actuated inhaler", Unit::Doses, &[200]),
];
#[rustfmt::skip]
const TOPICALS: &[Presentation] = &[
    form("cream", Unit::Grams, &[15, 30, 50, 100]),
    form("gel", Unit::Grams, &[30, 50, 100]),
    form("ointment", Unit::Grams, &[15, 30]),
];
#[rustfmt::skip]
const NASAL: &[Presentation] = &[
    form("nasal spray", Unit::Doses, &[60, 120, 150]),
];
#[rustfmt::skip]
const SUPPLEMENTS: &[Presentation] = &[
    form("tablets", Unit::Count, &[30, 60, 90, 120, 180]),
    form("capsules", Unit::Count, &[30, 60, 90]),
    form("chewable tablets", Unit::Count, &[30, 60]),
];

/// A category with the SKU prefix its products share.
struct Category {
    name: &'static str,
    code: &'static str,
}

const fn category(name: &'static str, code: &'static str) -> Category {
    Category { name, code }
}

const PAIN: Category = category("Pain relief", "PAI");
const ALLERGY: Category = category("Allergy", "ALG");
const DIGESTIVE: Category = category("Digestive health", "DIG");
const CARDIO: Category = category("Cardiovascular", "CRD");
const DIABETES: Category = category("Diabetes", "DIA");
const ANTIBIOTICS: Category = category("Antibiotics", "ABX");
const RESPIRATORY: Category = category("Respiratory", "RSP");
const VITAMINS: Category = category("Vitamins & supplements", "VIT");
const MENTAL: Category = category("Mental health", "MNT");
const THYROID: Category = category("Thyroid", "THY");
const SKIN: Category = category("Skin care", "SKN");
const CHILDREN: Category = category("Children's medicines", "CHD");

/// One active ingredient (or supplement) and the ways it is sold.
struct Ingredient {
    name: &'static str,
    category: &'static Category,
    strengths: &'static [&'static str],
    presentations: &'static [Presentation],
    /// Rough price of a 20-unit pack of the lowest strength, cents.
    base_cents: u64,
}

#[rustfmt::skip]
const INGREDIENTS: &[Ingredient] = &[
    Ingredient { name: "Paracetamol", category: &PAIN, strengths: &["500mg", "1g"], presentations: SOLUBLE, base_cents: 129 },
    Ingredient { name: "Ibuprofen", category: &PAIN, strengths: &["200mg", "400mg"], presentations: SOLUBLE, base_cents: 199 },
    Ingredient { name: "Aspirin", category: &PAIN, strengths: &["75mg", "300mg"], presentations: SOLUBLE, base_cents: 149 },
    Ingredient { name: "Naproxen", category: &PAIN, strengths: &["250mg", "500mg"], presentations: TABLETS, base_cents: 499 },
    Ingredient { name: "Co-codamol", category: &PAIN, strengths: &["8/500mg", "30/500mg"], presentations: SOLUBLE, base_cents: 399 },
    Ingredient { name: "Ibuprofen", category: &PAIN, strengths: &["5%", "10%"], presentations: TOPICALS, base_cents: 449 },
    Ingredient { name: "Diclofenac", category: &PAIN, strengths: &["1%", "2.32%"], presentations: TOPICALS, base_cents: 549 },
    Ingredient { name: "Cetirizine", category: &ALLERGY, strengths: &["10mg"], presentations: TABLETS, base_cents: 249 },
    Ingredient { name: "Loratadine", category: &ALLERGY, strengths: &["10mg"], presentations: TABLETS, base_cents: 249 },
    Ingredient { name: "Fexofenadine", category: &ALLERGY, strengths: &["120mg", "180mg"], presentations: TABLETS, base_cents: 699 },
    Ingredient { name: "Fluticasone", category: &ALLERGY, strengths: &["50mcg"], presentations: NASAL, base_cents: 749 },
    Ingredient { name: "Prednisolone", category: &ALLERGY, strengths: &["5mg", "25mg"], presentations: TABLETS, base_cents: 299 },
    Ingredient { name: "Chlorphenamine", category: &ALLERGY, strengths: &["4mg"], presentations: TABLETS, base_cents: 299 },
    Ingredient { name: "Omeprazole", category: &DIGESTIVE, strengths: &["10mg", "20mg"], presentations: CAPSULES, base_cents: 399 },
    Ingredient { name: "Lansoprazole", category: &DIGESTIVE, strengths: &["15mg", "30mg"], presentations: CAPSULES, base_cents: 399 },
    Ingredient { name: "Loperamide", category: &DIGESTIVE, strengths: &["2mg"], presentations: CAPSULES, base_cents: 299 },
    Ingredient { name: "Famotidine", category: &DIGESTIVE, strengths: &["10mg", "20mg"], presentations: TABLETS, base_cents: 449 },
    Ingredient { name: "Senna", category: &DIGESTIVE, strengths: &["7.5mg"], presentations: TABLETS, base_cents: 249 },
    Ingredient { name: "Bisacodyl", category: &DIGESTIVE, strengths: &["5mg"], presentations: TABLETS, base_cents: 249 },
    Ingredient { name: "Lactulose", category: &DIGESTIVE, strengths: &["3.3g/5ml"], presentations: LIQUIDS, base_cents: 499 },
    Ingredient { name: "Atorvastatin", category: &CARDIO, strengths: &["10mg", "20mg", "40mg", "80mg"], presentations: TABLETS, base_cents: 349 },
    Ingredient { name: "Simvastatin", category: &CARDIO, strengths: &["20mg", "40mg"], presentations: TABLETS, base_cents: 299 },
    Ingredient { name: "Rosuvastatin", category: &CARDIO, strengths: &["5mg", "10mg", "20mg"], presentations: TABLETS, base_cents: 449 },
    Ingredient { name: "Clopidogrel", category: &CARDIO, strengths: &["75mg"], presentations: TABLETS, base_cents: 399 },
    Ingredient { name: "Propranolol", category: &CARDIO, strengths: &["10mg", "40mg"], presentations: TABLETS, base_cents: 249 },
    Ingredient { name: "Amlodipine", category: &CARDIO, strengths: &["5mg", "10mg"], presentations: TABLETS, base_cents: 249 },
    Ingredient { name: "Lisinopril", category: &CARDIO, strengths: &["5mg", "10mg", "20mg"], presentations: TABLETS, base_cents: 249 },
    Ingredient { name: "Ramipril", category: &CARDIO, strengths: &["2.5mg", "5mg", "10mg"], presentations: CAPSULES, base_cents: 299 },
    Ingredient { name: "Bisoprolol", category: &CARDIO, strengths: &["2.5mg", "5mg"], presentations: TABLETS, base_cents: 249 },
    Ingredient { name: "Losartan", category: &CARDIO, strengths: &["25mg", "50mg", "100mg"], presentations: TABLETS, base_cents: 349 },
    Ingredient { name: "Metformin", category: &DIABETES, strengths: &["500mg", "850mg", "1000mg"], presentations: TABLETS, base_cents: 199 },
    Ingredient { name: "Gliclazide", category: &DIABETES, strengths: &["40mg", "80mg"], presentations: TABLETS, base_cents: 299 },
    Ingredient { name: "Sitagliptin", category: &DIABETES, strengths: &["50mg", "100mg"], presentations: TABLETS, base_cents: 1899 },
    Ingredient { name: "Amoxicillin", category: &ANTIBIOTICS, strengths: &["250mg", "500mg"], presentations: CAPSULES, base_cents: 399 },
    Ingredient { name: "Clarithromycin", category: &ANTIBIOTICS, strengths: &["250mg", "500mg"], presentations: TABLETS, base_cents: 699 },
    Ingredient { name: "Doxycycline", category: &ANTIBIOTICS, strengths: &["50mg", "100mg"], presentations: CAPSULES, base_cents: 599 },
    Ingredient { name: "Flucloxacillin", category: &ANTIBIOTICS, strengths: &["250mg", "500mg"], presentations: CAPSULES, base_cents: 549 },
    Ingredient { name: "Nitrofurantoin", category: &ANTIBIOTICS, strengths: &["50mg", "100mg"], presentations: CAPSULES, base_cents: 649 },
    Ingredient { name: "Montelukast", category: &RESPIRATORY, strengths: &["10mg"], presentations: TABLETS, base_cents: 449 },
    Ingredient { name: "Salbutamol", category: &RESPIRATORY, strengths: &["100mcg"], presentations: INHALERS, base_cents: 599 },
    Ingredient { name: "Beclometasone", category: &RESPIRATORY, strengths: &["50mcg", "100mcg", "200mcg"], presentations: INHALERS, base_cents: 1199 },
    Ingredient { name: "Carbocisteine", category: &RESPIRATORY, strengths: &["250mg/5ml", "750mg/10ml"], presentations: LIQUIDS, base_cents: 699 },
    Ingredient { name: "Vitamin D3", category: &VITAMINS, strengths: &["400IU", "1000IU", "2000IU"], presentations: SUPPLEMENTS, base_cents: 349 },
    Ingredient { name: "Vitamin C", category: &VITAMINS, strengths: &["500mg", "1000mg"], presentations: SUPPLEMENTS, base_cents: 299 },
    Ingredient { name: "Vitamin B12", category: &VITAMINS, strengths: &["50mcg", "1000mcg"], presentations: SUPPLEMENTS, base_cents: 449 },
    Ingredient { name: "Folic acid", category: &VITAMINS, strengths: &["400mcg", "5mg"], presentations: SUPPLEMENTS, base_cents: 199 },
    Ingredient { name: "Ferrous sulfate", category: &VITAMINS, strengths: &["200mg"], presentations: SUPPLEMENTS, base_cents: 249 },
    Ingredient { name: "Magnesium", category: &VITAMINS, strengths: &["250mg", "375mg"], presentations: SUPPLEMENTS, base_cents: 399 },
    Ingredient { name: "Zinc", category: &VITAMINS, strengths: &["15mg", "25mg"], presentations: SUPPLEMENTS, base_cents: 299 },
    Ingredient { name: "Calcium and vitamin D3", category: &VITAMINS, strengths: &["500mg/400IU"], presentations: SUPPLEMENTS, base_cents: 449 },
    Ingredient { name: "Omega-3 fish oil", category: &VITAMINS, strengths: &["1000mg"], presentations: SUPPLEMENTS, base_cents: 699 },
    Ingredient { name: "Sertraline", category: &MENTAL, strengths: &["50mg", "100mg"], presentations: TABLETS, base_cents: 349 },
    Ingredient { name: "Citalopram", category: &MENTAL, strengths: &["10mg", "20mg"], presentations: TABLETS, base_cents: 299 },
    Ingredient { name: "Fluoxetine", category: &MENTAL, strengths: &["20mg"], presentations: CAPSULES, base_cents: 299 },
    Ingredient { name: "Mirtazapine", category: &MENTAL, strengths: &["15mg", "30mg"], presentations: TABLETS, base_cents: 399 },
    Ingredient { name: "Levothyroxine", category: &THYROID, strengths: &["25mcg", "50mcg", "100mcg"], presentations: TABLETS, base_cents: 249 },
    Ingredient { name: "Hydrocortisone", category: &SKIN, strengths: &["0.5%", "1%"], presentations: TOPICALS, base_cents: 399 },
    Ingredient { name: "Clotrimazole", category: &SKIN, strengths: &["1%", "2%"], presentations: TOPICALS, base_cents: 449 },
    Ingredient { name: "Aciclovir", category: &SKIN, strengths: &["5%"], presentations: TOPICALS, base_cents: 499 },
    Ingredient { name: "Emollient", category: &SKIN, strengths: &["paraffin 50%", "urea 10%"], presentations: TOPICALS, base_cents: 349 },
    Ingredient { name: "Children's paracetamol", category: &CHILDREN, strengths: &["120mg/5ml", "250mg/5ml"], presentations: LIQUIDS, base_cents: 299 },
    Ingredient { name: "Children's ibuprofen", category: &CHILDREN, strengths: &["100mg/5ml"], presentations: LIQUIDS, base_cents: 349 },
    Ingredient { name: "Children's cetirizine", category: &CHILDREN, strengths: &["5mg/5ml"], presentations: LIQUIDS, base_cents: 399 },
];

/// One (ingredient, strength, presentation, pack) combination; `strength_rank` is 1 for the lowest strength.
struct Candidate {
    ingredient: &'static Ingredient,
    strength_rank: u64,
    strength: &'static str,
    presentation: &'static Presentation,
    pack: u32,
}

/// Every combination, shuffled, of which the first [`PRODUCTS`] are kept and sorted by category.
fn products(rng: &mut SplitMix64) -> Vec<ProductSeed> {
    let mut candidates = Vec::new();
    for ingredient in INGREDIENTS {
        for (strength_rank, &strength) in (1_u64..).zip(ingredient.strengths) {
            for presentation in ingredient.presentations {
                for &pack in presentation.packs {
                    candidates.push(Candidate {
                        ingredient,
                        strength_rank,
                        strength,
                        presentation,
                        pack,
                    });
                }
            }
        }
    }
    // Fisher-Yates, so the kept products cover every category, not just the first ingredients.
    for i in (1..candidates.len()).rev() {
        candidates.swap(i, rng.index(i + 1));
    }
    candidates.truncate(PRODUCTS);
    candidates.sort_by_key(|c| {
        (
            c.ingredient.category.code,
            c.ingredient.name,
            c.strength,
            c.presentation.form,
            c.pack,
        )
    });
    (1_i64..)
        .zip(candidates)
        .map(|(id, candidate)| product(rng, id, &candidate))
        .collect()
}

/// Names, prices and stocks one product: "Paracetamol 500mg tablets x20", SKU "PAI-00042".
fn product(rng: &mut SplitMix64, id: i64, c: &Candidate) -> ProductSeed {
    let pack = u64::from(c.pack);
    let (pack_label, size_percent) = match c.presentation.unit {
        Unit::Count => (format!("x{pack}"), pack.max(10) * 100 / 20),
        Unit::Millilitres => (format!("{pack}ml"), pack * 100 / 150),
        Unit::Grams => (format!("{pack}g"), pack * 100 / 30),
        Unit::Doses => (format!("{pack} doses"), 100),
    };
    let strength_percent = 90 + 10 * c.strength_rank;
    let raw =
        c.ingredient.base_cents * size_percent / 100 * strength_percent / 100 + rng.below(120);
    // Shelf prices end in 9.
    let price_cents = (raw / 10 * 10 + 9) as i64;
    // About 6% of products are low on stock, some of them out of stock.
    let stock = if rng.below(100) < 6 {
        rng.below(LOW_STOCK as u64)
    } else {
        rng.between(10, 480)
    };
    let Ingredient { name, category, .. } = c.ingredient;
    ProductSeed {
        id,
        sku: format!("{}-{id:05}", category.code),
        name: format!("{name} {} {} {pack_label}", c.strength, c.presentation.form),
        category: category.name,
        price_cents,
        stock: stock as i64,
        updated_at: random_past_timestamp(rng),
    }
}

/// A timestamp in the year before [`HISTORY_END_UNIX`].
fn random_past_timestamp(rng: &mut SplitMix64) -> String {
    crate::time::format_utc(HISTORY_END_UNIX - rng.below(HISTORY_SECS) as i64)
}

// ---------------------------------------------------------------------------------------------------------------
// Customers: mostly patients, some organisations buying on account.

#[rustfmt::skip]
const FIRST_NAMES: &[&str] = &[
    "Olivia", "Amelia", "Isla", "Ava", "Mia", "Grace", "Sophia", "Ella", "Freya", "Lily", "Noah",
    "Oliver", "George", "Arthur", "Leo", "Harry", "Oscar", "Jack", "Muhammad", "Theo", "Priya",
    "Aisha", "Mateo", "Zofia", "Chidi",
];
#[rustfmt::skip]
const LAST_NAMES: &[&str] = &[
    "Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "Johnson", "Davies", "Patel",
    "Robinson", "Wright", "Thompson", "Evans", "Walker", "White", "Roberts", "Green", "Hall",
    "Khan", "Clarke", "Nowak", "Okafor",
];
#[rustfmt::skip]
const ORGANISATION_PREFIXES: &[&str] = &[
    "Riverside", "Oakwood", "Meadowbank", "Hillcrest", "St Anne's", "Northgate", "Elmfield",
    "Harbour View",
];
#[rustfmt::skip]
const ORGANISATION_KINDS: &[&str] = &[
    "Care Home", "Medical Practice", "Dental Surgery", "Nursing Home", "Clinic",
];
#[rustfmt::skip]
const CITIES: &[&str] = &[
    "London", "Manchester", "Birmingham", "Leeds", "Glasgow", "Bristol", "Liverpool", "Edinburgh",
    "Cardiff", "Belfast", "Nottingham", "Sheffield", "Leicester", "Brighton", "York", "Oxford",
    "Cambridge", "Norwich",
];

fn customers(rng: &mut SplitMix64) -> Vec<CustomerSeed> {
    (1_i64..=CUSTOMERS as i64)
        .map(|id| customer(rng, id))
        .collect()
}

/// A patient (three in four) or an organisation; ids keep emails and phone numbers unique.
fn customer(rng: &mut SplitMix64, id: i64) -> CustomerSeed {
    let (name, email) = if rng.below(100) < 25 {
        let name = format!(
            "{} {}",
            rng.pick(ORGANISATION_PREFIXES),
            rng.pick(ORGANISATION_KINDS)
        );
        let email = format!("orders.{id}@{}.example.com", slug(&name));
        (name, email)
    } else {
        let (first, last) = (rng.pick(FIRST_NAMES), rng.pick(LAST_NAMES));
        let email = format!(
            "{}.{}.{id}@example.com",
            first.to_lowercase(),
            last.to_lowercase()
        );
        (format!("{first} {last}"), email)
    };
    CustomerSeed {
        id,
        name,
        email,
        city: rng.pick(CITIES),
        // 07700 900000-900999 is reserved by Ofcom for drama: never a real number.
        phone: format!("+44 7700 900{:03}", id % 1000),
    }
}

/// `St Anne's Care Home` → `st-annes-care-home`.
fn slug(name: &str) -> String {
    name.chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_ascii_alphanumeric() => Some(c.to_ascii_lowercase()),
            _ => None,
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------------------------
// Quotations.

/// Statuses with their weight out of 100.
#[rustfmt::skip]
const STATUSES: &[(&str, u64)] = &[("draft", 20), ("sent", 30), ("accepted", 35), ("rejected", 15)];

/// All statuses, in lifecycle order; the dashboard reports each even when its count is zero.
pub(crate) const STATUS_NAMES: [&str; 4] = ["draft", "sent", "accepted", "rejected"];

fn quotations(
    rng: &mut SplitMix64,
    products: &[ProductSeed],
    customers: u64,
) -> Vec<QuotationSeed> {
    (1_i64..=QUOTATIONS as i64)
        .map(|id| quotation(rng, id, products, customers))
        .collect()
}

/// A quotation of 1 to [`MAX_LINES`] distinct products for a random customer.
fn quotation(
    rng: &mut SplitMix64,
    id: i64,
    products: &[ProductSeed],
    customers: u64,
) -> QuotationSeed {
    let mut roll = rng.below(100);
    let status = STATUSES
        .iter()
        .find(|(_, weight)| {
            let hit = roll < *weight;
            roll = roll.saturating_sub(*weight);
            hit
        })
        .map_or("draft", |(status, _)| status);

    let line_count = rng.between(1, MAX_LINES) as usize;
    let mut seen = HashSet::with_capacity(line_count);
    let mut lines = Vec::with_capacity(line_count);
    while lines.len() < line_count {
        let product = &products[rng.index(products.len())];
        if seen.insert(product.id) {
            // Mostly small quantities; organisations sometimes order by the box.
            let quantity = if rng.below(10) == 0 {
                rng.between(10, 60)
            } else {
                rng.between(1, 6)
            };
            let unit_price_cents = product.price_cents;
            lines.push(LineSeed {
                product_id: product.id,
                quantity: quantity as i64,
                unit_price_cents,
            });
        }
    }

    QuotationSeed {
        id,
        customer_id: rng.between(1, customers) as i64,
        status,
        created_at: random_past_timestamp(rng),
        total_cents: lines
            .iter()
            .map(|line| line.quantity * line.unit_price_cents)
            .sum(),
        lines,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_complete() {
        let (a, b) = (generate(7), generate(7));
        assert_eq!(a.products.len(), PRODUCTS);
        assert_eq!(a.customers.len(), CUSTOMERS);
        assert_eq!(a.quotations.len(), QUOTATIONS);
        assert_eq!(a.products[17].name, b.products[17].name);
        assert_eq!(
            a.quotations[1234].total_cents,
            b.quotations[1234].total_cents
        );
        let names: HashSet<_> = a.products.iter().map(|p| &p.name).collect();
        assert_eq!(names.len(), PRODUCTS, "product names are unique");
        let line_counts = 1..=MAX_LINES as usize;
        assert!(
            a.quotations
                .iter()
                .all(|q| line_counts.contains(&q.lines.len()))
        );
    }
}
